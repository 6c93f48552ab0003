"""Deterministic train/val/test assignment by source photo: the ratios hold over the whole dataset, and
each class large enough to be split is split in the same ratios (the thesis' stratified split).

Each group (source photo) gets a rank from a seeded hash of its id, so the assignment does not depend
on file-system order. Within its class, a group at rank k of n gets the position u = (k + o) / n in
[0, 1), where o in [0, 1) is a seeded hash of the class: the class's groups sit evenly spaced over
[0, 1). All groups are then sorted by u and cut once, globally, into the split counts (test first,
then val, then train). Why this shape:

- the global cut meets the ratios over the whole dataset within one photo, whatever the class sizes;
  cutting each class separately and rounding sent every class of fewer than three photos to train
  (one photo per class, as an ImageNet sample has it, gave 100 % train);
- a class of n groups has its groups 1/n apart, so any cut at u takes n·u of them, within one:
  large classes stay stratified, and a one-photo class is a single draw at a random position.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

from chromapipe.config import SplitConfig

SPLITS = ("train", "val", "test")


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def _unit(seed: int, key: str) -> float:
    """A seeded hash of ``key`` as a number in [0, 1)."""
    return int(_rank(seed, key)[:13], 16) / 16**13


def split_counts(n: int, ratios: SplitConfig) -> dict[str, int]:
    """How many of ``n`` groups go to each split: each within one of n·ratio (largest remainders), none
    for a zero ratio; an empty test or val split with a non-zero ratio gets one group where another
    split can spare it and stay within one of its own share (the evaluate stage needs a test split)."""
    exact = {name: n * getattr(ratios, name) for name in SPLITS}
    counts = {name: math.floor(exact[name] + 1e-9) for name in SPLITS}
    by_remainder = sorted(
        SPLITS, key=lambda name: (-(exact[name] - counts[name]), ("test", "val", "train").index(name))
    )
    for name in by_remainder[: n - sum(counts.values())]:
        counts[name] += 1
    for name in ("test", "val"):
        if getattr(ratios, name) == 0 or counts[name] > 0:
            continue
        donors = [s for s in SPLITS if s != name and counts[s] >= max(exact[s], 2 if getattr(ratios, s) > 0 else 1)]
        if donors:
            donor = max(donors, key=lambda s: counts[s] - exact[s])
            counts[donor] -= 1
            counts[name] += 1
    return counts


def assign_splits(groups: Iterable[tuple[str, int]], ratios: SplitConfig, seed: int) -> dict[str, str]:
    """Map group id -> split name. ``groups`` yields (group id, class label) pairs (duplicates allowed;
    a group listed under several labels counts in the smallest)."""
    label_of: dict[str, int] = {}
    for group, label in groups:
        label_of[group] = min(label, label_of.get(group, label))
    by_class: dict[int, list[str]] = {}
    for group, label in label_of.items():
        by_class.setdefault(label, []).append(group)
    positions: list[tuple[float, str, str]] = []
    for label, members in by_class.items():
        offset = _unit(seed, f"class:{label}")
        ranked = sorted(members, key=lambda g: _rank(seed, g))
        positions += [((k + offset) / len(ranked), _rank(seed, g), g) for k, g in enumerate(ranked)]
    positions.sort()
    counts = split_counts(len(positions), ratios)
    assignment: dict[str, str] = {}
    start = 0
    for name in ("test", "val", "train"):
        for _, _, g in positions[start : start + counts[name]]:
            assignment[g] = name
        start += counts[name]
    return assignment
