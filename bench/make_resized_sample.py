"""Write a copy of imagenet-sample with every photo's short side at 256 px, for carrying to a GPU machine.

Why: the original folder holds photos up to several megapixels, while every profile trains at 224–256 px.
Resizing once to a 256-px short side (JPEG quality 95) keeps what training and evaluation use and shrinks the
folder several-fold (sizes: reports/benchmarks.md, "Commands for a GPU session"). The ImageFolder layout and
file names are kept, so the same ``data.file_list`` files (``lists/imagenet-sample-*.txt``) apply to the copy.
Photos whose short side is already ≤ 256 px are copied byte for byte (never upscaled); grayscale photos stay
grayscale (the prepare stage decides what to skip, not this tool). EXIF orientation is applied before resizing
(the output carries no orientation tag), and an embedded ICC profile is kept.

The output is data: never commit it (``/work/shared`` photos are under the ImageNet terms).

    python bench/make_resized_sample.py OUT_DIR [--src /work/shared/data/imagenet-sample] [--short 256]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from PIL import Image, ImageOps

DEFAULT_SRC = Path("/work/shared/data/imagenet-sample")
QUALITY = 95
KEEP_MODES = ("L", "RGB", "CMYK")  # modes JPEG stores as they are; anything else is converted to RGB


def target_size(width: int, height: int, short: int) -> tuple[int, int] | None:
    """The (w, h) with the short side at ``short`` and the aspect kept; None when already small enough."""
    s = min(width, height)
    if s <= short:
        return None
    scale = short / s
    return (short, max(short, round(height * scale))) if width <= height else (max(short, round(width * scale)), short)


def resize_one(src: Path, dst: Path, short: int) -> str:
    """Write ``dst`` from ``src``; returns what was done (``resized`` / ``copied``) for the summary."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(src) as img:
        size = target_size(*img.size, short)
        orientation = img.getexif().get(0x0112, 1)
        if size is None and orientation in (1, None):
            shutil.copyfile(src, dst)
            return "copied"
        icc = img.info.get("icc_profile")
        img = ImageOps.exif_transpose(img)
        if img.mode not in KEEP_MODES:
            img = img.convert("RGB")
        size = target_size(*img.size, short)
        if size is not None:
            img = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        img.save(dst, format="JPEG", quality=QUALITY, icc_profile=icc)
    return "resized"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="output folder (created; existing files are overwritten)")
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC)
    ap.add_argument("--short", type=int, default=256, help="target short side in pixels")
    args = ap.parse_args()
    if args.out.resolve() == args.src.resolve() or args.src.resolve() in args.out.resolve().parents:
        raise SystemExit("the output folder must not be (inside) the source folder")
    counts = {"resized": 0, "copied": 0}
    for src in sorted(p for p in args.src.rglob("*") if p.is_file() and not p.name.startswith(".")):
        counts[resize_one(src, args.out / src.relative_to(args.src), args.short)] += 1
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"{counts['resized']} resized, {counts['copied']} copied as they were -> {args.out} ({total / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
