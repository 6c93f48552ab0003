"""Scoring image pairs (``chromapipe score PRED TARGET``): the metric suite on user images, with its protocol.

Why a standalone command: users compare their own colorizations (or another system's) with ground truth
under exactly the protocol chromapipe reports — same implementations, weights hashes, sRGB uint8 at the
images' own resolution — without running the pipeline. Inputs are two files or two directories matched by
file stem; every naming or size mismatch is listed before any metric is computed.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp"}


class ScoreInputError(ValueError):
    """The two inputs cannot be paired (names, sizes, unreadable files): the message lists the offenders."""


def _listing(items: list[str], limit: int = 20) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", … ({len(items) - limit} more)" if len(items) > limit else "")


def collect(path: Path) -> dict[str, Path]:
    """stem -> file for a file or a directory (non-recursive, image extensions only)."""
    if path.is_file():
        return {path.stem: path}
    if not path.is_dir():
        raise ScoreInputError(f"{path} is neither an image file nor a directory")
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for f in sorted(path.iterdir()):
        if f.is_file() and f.suffix.lower() in IMAGE_EXTS:
            by_stem[f.stem].append(f)
    dup = [f"{stem} ({', '.join(p.name for p in ps)})" for stem, ps in by_stem.items() if len(ps) > 1]
    if dup:
        raise ScoreInputError(f"{path}: several files share a name stem: {_listing(dup)}")
    if not by_stem:
        raise ScoreInputError(f"{path}: no images ({', '.join(sorted(IMAGE_EXTS))})")
    return {stem: ps[0] for stem, ps in by_stem.items()}


def pair_inputs(pred: Path, target: Path) -> list[tuple[str, Path, Path]]:
    """Matched (name, pred file, target file); two single files pair regardless of their names."""
    if pred.is_file() != target.is_file():
        raise ScoreInputError(f"PRED and TARGET must both be files or both be directories: {pred}, {target}")
    p, t = collect(pred), collect(target)
    if pred.is_file():
        return [(pred.stem, p[pred.stem], t[target.stem])]
    only_p, only_t = sorted(set(p) - set(t)), sorted(set(t) - set(p))
    if only_p or only_t:
        parts = []
        if only_p:
            parts.append(f"{len(only_p)} only in {pred}: {_listing(only_p)}")
        if only_t:
            parts.append(f"{len(only_t)} only in {target}: {_listing(only_t)}")
        raise ScoreInputError("file names do not match (paired by stem); " + "; ".join(parts))
    return [(stem, p[stem], t[stem]) for stem in sorted(p)]


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the header only."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except Exception as exc:  # noqa: BLE001 - any unreadable file is an input error
        raise ScoreInputError(f"cannot read {path}: {exc}") from exc


def check_sizes(pairs: list[tuple[str, Path, Path]]) -> dict[str, tuple[int, int]]:
    sizes, bad = {}, []
    for name, pf, tf in pairs:
        sp, st = image_size(pf), image_size(tf)
        if sp != st:
            bad.append(f"{name} (pred {sp[1]}x{sp[0]}, target {st[1]}x{st[0]})")
        sizes[name] = sp
    if bad:
        raise ScoreInputError(
            f"{len(bad)} image pair(s) differ in size (scores are computed at the images' "
            f"own resolution; resize nothing silently): {_listing(bad)}"
        )
    return sizes


def _read(path: Path):
    from torchvision.io import ImageReadMode, decode_image, read_file

    return decode_image(read_file(str(path)), mode=ImageReadMode.RGB)


def score_pairs(
    pred: Path, target: Path, *, device: str = "auto", lpips_net: str = "alex", fid: bool = True, batch_size: int = 8
) -> dict[str, Any]:
    """Score matched images; returns ``{"protocol", "metrics", "unavailable", "details"}``."""
    import torch

    from chromapipe.devices import resolve_device
    from chromapipe.metrics.suite import AVERAGING, MetricSuite, versions

    pairs = pair_inputs(pred, target)
    sizes = check_sizes(pairs)
    groups: dict[tuple[int, int], list[tuple[str, Path, Path]]] = defaultdict(list)
    for item in pairs:
        groups[sizes[item[0]]].append(item)
    dev = resolve_device(device)
    with MetricSuite(lpips_net=lpips_net, fid=fid, device=dev) as suite:
        for items in groups.values():
            for i in range(0, len(items), batch_size):
                chunk = items[i : i + batch_size]
                suite.update(torch.stack([_read(p) for _, p, _ in chunk]), torch.stack([_read(t) for _, _, t in chunk]))
        report = suite.compute().to_dict()
    protocol = {
        "pred": str(pred),
        "target": str(target),
        "n_images": len(pairs),
        "resolutions": sorted({f"{w}x{h}" for h, w in sizes.values()}),
        "resize": "none (native resolution)",
        "color_space": "sRGB uint8",
        "averaging": AVERAGING,
        "device": str(dev),
        "versions": versions(),
        "implementations": {k: d.get("implementation") for k, d in report["details"].items()},
        "weights": {
            k: {"path": d["weights"], "sha256": d["sha256"]} for k, d in report["details"].items() if "sha256" in d
        },
    }
    return {"protocol": protocol, **report}
