"""Deterministic train/val/test assignment by source photo, stratified by class.

Each group (source photo) gets a rank from a seeded hash of its id, so the assignment does not depend
on file-system order and does not change when unrelated files are added to the tree. Within each class
the groups are cut by rank into the split ratios (the thesis' stratified split).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable

from chromapipe.config import SplitConfig

SPLITS = ("train", "val", "test")


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def split_counts(n: int, ratios: SplitConfig) -> dict[str, int]:
    """How many of ``n`` groups go to each split; a split with a non-zero ratio gets at least one when possible."""
    counts = {"val": round(n * ratios.val), "test": round(n * ratios.test)}
    for name in ("val", "test"):
        if getattr(ratios, name) > 0 and counts[name] == 0 and n >= 3:
            counts[name] = 1
    counts["train"] = max(0, n - counts["val"] - counts["test"])
    return counts


def assign_splits(groups: Iterable[tuple[str, int]], ratios: SplitConfig, seed: int) -> dict[str, str]:
    """Map group id -> split name. ``groups`` yields (group id, class label) pairs (duplicates allowed)."""
    by_class: dict[int, set[str]] = defaultdict(set)
    for group, label in groups:
        by_class[label].add(group)
    assignment: dict[str, str] = {}
    for label in sorted(by_class):
        ranked = sorted(by_class[label], key=lambda g: _rank(seed, g))
        counts = split_counts(len(ranked), ratios)
        start = 0
        for name in ("test", "val", "train"):
            for g in ranked[start : start + counts[name]]:
                assignment[g] = name
            start += counts[name]
    return assignment
