"""An explicit split: a CSV that assigns each image of a dataset to train, val or test.

Why: a seeded split of our own cannot give another project's test images. The thesis split its Places205
subset with scikit-learn's ``StratifiedShuffleSplit`` (test 10 % of the non-gray images by class with
``random_state=123456``, then val 5/90 of the rest) over the rows of its own file listing, and saved the
result as ``files_split.csv``: one row per kept image, a ``file_name`` column (the path relative to the
dataset folder), a ``class`` column and a ``split`` column (``train``/``val``/``test``), rows grouped train,
val, test. The split depends on that listing's row order, so it can only be reproduced from the saved
file: this module reads that format (extra columns are ignored) and nothing else decides the assignment.

The file's row order is kept: images are stored in it, so a split is read back in the order the thesis'
data loaders (``shuffle=False`` for val and test) went through it.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from chromapipe.config import ConfigError
from chromapipe.data.manifest import SplitFileRecord
from chromapipe.data.sources import SourceImage

PATH_COLUMN = "file_name"  # the thesis' column names (pre_processing.py)
SPLIT_COLUMN = "split"
SPLIT_NAMES = ("train", "val", "test")
NOT_IN_SPLIT_FILE = "not_in_split_file"  # skip reason of an image under root that the file does not list


@dataclass(frozen=True)
class SplitFile:
    """The assignment a split file states: relative path -> split, in the file's row order."""

    path: Path
    assignment: dict[str, str]
    sha256: str

    def describe(self) -> SplitFileRecord:
        """What the manifest records about it (the assignment itself is in the shards' ids)."""
        counts = {name: sum(v == name for v in self.assignment.values()) for name in SPLIT_NAMES}
        return SplitFileRecord(path=str(self.path), sha256=self.sha256, rows=len(self.assignment), counts=counts)


def _normalise(rel: str) -> str:
    """A path as the dataset lists it: forward slashes, no leading ``./`` (the thesis ran on Windows)."""
    rel = rel.strip().replace("\\", "/")
    while rel.startswith("./"):
        rel = rel[2:]
    return rel


def read_split_file(path: Path, key: str) -> SplitFile:
    """Parse ``path``; every problem is a ConfigError naming ``key`` (``datasets.<name>.split_file``) and the row."""
    if not path.is_file():
        raise ConfigError(f"{key}: {path} not found")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{key}: {path} is not UTF-8 text ({exc})") from None
    reader = csv.DictReader(text.splitlines())
    columns = reader.fieldnames or []
    missing = [c for c in (PATH_COLUMN, SPLIT_COLUMN) if c not in columns]
    if missing:
        raise ConfigError(
            f"{key}: {path} lacks the column(s) {', '.join(missing)}; expected a CSV with a header holding "
            f"{PATH_COLUMN!r} (path relative to the dataset root) and {SPLIT_COLUMN!r} (train/val/test), as the "
            f"thesis' files_split.csv; found {columns}"
        )
    assignment: dict[str, str] = {}
    for row_no, row in enumerate(reader, start=2):  # line 1 is the header
        rel, split = _normalise(row[PATH_COLUMN] or ""), (row[SPLIT_COLUMN] or "").strip()
        if not rel:
            raise ConfigError(f"{key}: {path} line {row_no}: empty {PATH_COLUMN}")
        if split not in SPLIT_NAMES:
            raise ConfigError(
                f"{key}: {path} line {row_no}: split {split!r} for {rel!r}; expected one of {', '.join(SPLIT_NAMES)}"
            )
        if rel in assignment:
            raise ConfigError(f"{key}: {path} line {row_no}: {rel!r} is listed twice")
        assignment[rel] = split
    if not assignment:
        raise ConfigError(f"{key}: {path} lists no image")
    return SplitFile(path, assignment, hashlib.sha256(data).hexdigest())


def apply_split_file(
    sources: Sequence[SourceImage], split_file: SplitFile, key: str
) -> tuple[list[SourceImage], list[SourceImage]]:
    """(the listed sources in the file's row order, the sources the file does not list).

    A listed path that is not among ``sources`` (the dataset under its root, after ``file_list``) is an
    error: the split would silently lose an image the file's owner trained or tested on.
    """
    by_id = {s.id: s for s in sources}
    absent = [rel for rel in split_file.assignment if rel not in by_id]
    if absent:
        shown = ", ".join(repr(a) for a in absent[:5]) + (f" and {len(absent) - 5} more" if len(absent) > 5 else "")
        raise ConfigError(
            f"{key}: {len(absent)} of the {len(split_file.assignment)} paths in {split_file.path} are not in the "
            f"dataset: {shown}; its paths must be relative to the dataset's root and name files under it"
        )
    listed = [by_id[rel] for rel in split_file.assignment]
    unlisted = [s for s in sources if s.id not in split_file.assignment]
    return listed, unlisted
