"""Write fixed train / held-out file lists for the real-photo profile (``data.file_list``).

Why fixed lists: a real-photo profile (``data.source: folder``, ``data.root`` = imagenet-sample) needs a
held-out set that never moves when files are added, removed or listed in another order, so that numbers
from different runs and machines are measured on the same photos. Membership is therefore decided per
file by a seeded hash of its relative path — not by position in a sorted listing — and the held-out set
is the ``n_holdout`` files with the smallest hashes.

The format is what ``chromapipe.data.sources._read_file_list`` reads: one path per line, relative to the
ImageFolder root, ``#`` comment lines allowed (the first whitespace-separated token of a line is used,
so paths must not contain spaces — checked here).

    python bench/make_holdout_lists.py [--root /work/shared/data/imagenet-sample] [--out lists]
                                       [--holdout 80] [--seed chromapipe-holdout-v1]
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

DEFAULT_ROOT = Path("/work/shared/data/imagenet-sample")
DEFAULT_SEED = "chromapipe-holdout-v1"
NAME = "imagenet-sample"


def list_files(root: Path) -> list[str]:
    """Relative POSIX paths of every regular, non-hidden file under ``root`` (what ``folder_images`` sees)."""
    files = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts):
            files.append(rel.as_posix())
    bad = [f for f in files if any(c.isspace() for c in f) or f.startswith("#")]
    if bad:
        raise ValueError(f"paths with whitespace or a leading '#' cannot go into a file list: {bad[:3]}")
    return sorted(files)


def path_key(rel: str, seed: str) -> str:
    """The seeded hash that orders files for the held-out draw (independent of listing order)."""
    return hashlib.sha256(f"{seed}\0{rel}".encode()).hexdigest()


def split_files(files: list[str], n_holdout: int, seed: str) -> tuple[list[str], list[str]]:
    """(train, holdout), each sorted: holdout = the ``n_holdout`` files with the smallest seeded hashes."""
    if not 0 < n_holdout < len(files):
        raise ValueError(f"--holdout {n_holdout}: must be between 1 and {len(files) - 1} for {len(files)} files")
    ranked = sorted(files, key=lambda f: path_key(f, seed))
    holdout = set(ranked[:n_holdout])
    return sorted(f for f in files if f not in holdout), sorted(holdout)


def render(paths: list[str], what: str, seed: str, n_total: int) -> str:
    header = [
        f"# {NAME} {what}: {len(paths)} of {n_total} photos, paths relative to the imagenet-sample root",
        f"# written by bench/make_holdout_lists.py; held-out = smallest sha256('{seed}' NUL path)",
    ]
    return "\n".join(header + paths) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "lists")
    ap.add_argument("--holdout", type=int, default=80)
    ap.add_argument("--seed", default=DEFAULT_SEED)
    args = ap.parse_args()
    files = list_files(args.root)
    train, holdout = split_files(files, args.holdout, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{NAME}-train.txt").write_text(render(train, "train", args.seed, len(files)))
    (args.out / f"{NAME}-holdout.txt").write_text(render(holdout, "held-out", args.seed, len(files)))
    print(f"{len(train)} train + {len(holdout)} held-out -> {args.out}")


if __name__ == "__main__":
    main()
