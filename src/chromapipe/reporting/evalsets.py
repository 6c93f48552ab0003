"""The evaluation results as (model × evaluation set) records, and the files each set saved for figures.

Why a module of its own: a number in a paper's table means "method M on data set D". The evaluate stage
writes one record per model per named evaluation set (``<eval dir>/<model>/<set>/metrics.json``), and
the report may put a measured number in a paper's cell only when the record's model *and* data set are
the ones that cell states. This module is where "which set is a record on" is decided, once, so that
tables, figures and the learning section all agree:

- the set's *name* is the name in params (``sample``, ``imagenet_ctest10k``): ``protocol.dataset``, else
  the set directory's name (:func:`set_name`);
- the set's *label* is the name the papers use (``protocol.dataset_label``: one of the ``dataset``
  strings of :mod:`chromapipe.reporting.published`), or None for a set the papers never used.

The older flat layout (``<eval dir>/<model>/metrics.json``) is still read: its set comes from
``protocol.dataset`` and its samples sit directly in the model's directory.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from chromapipe.metrics.record import GRAY, MetricsRecord
from chromapipe.reporting import published as pub

UNNAMED_SET = "unnamed set"


# ---------------------------------------------------------------------- what set a record is on


def set_name(ev: MetricsRecord) -> str:
    """The evaluation set's name in params (``sample``, ``imagenet_ctest10k``…).

    As ``MetricsRecord.dataset`` (``protocol.dataset``, else the directory read from), except that a record of
    the old flat layout without ``protocol.dataset`` is not named after its model's directory.
    """
    value = ev.protocol.get("dataset")
    if isinstance(value, str) and value:
        return value
    if ev.path is not None and ev.path.name != ev.name:  # per-set layout: the directory is the set
        return ev.path.name
    return UNNAMED_SET


def set_label(ev: MetricsRecord) -> str | None:
    """The papers' name for the record's set (``ImageNet ctest10k``…), or None when the papers never used it.

    Only a label that a published table actually uses counts: anything else (a typo, a set of our own)
    must not place a measured number next to a paper's.
    """
    value = ev.protocol.get("dataset_label")
    return value if isinstance(value, str) and value in pub.DATASET_LABELS else None


def unknown_label(ev: MetricsRecord) -> str | None:
    """A ``dataset_label`` the record states but no published table uses (reported as missing)."""
    value = ev.protocol.get("dataset_label")
    return value if isinstance(value, str) and value and value not in pub.DATASET_LABELS else None


def slug(name: str) -> str:
    """A set or model name made safe as part of a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "set"


# ---------------------------------------------------------------------- loading


def _read(directory: Path, model: str) -> MetricsRecord:
    """``directory/metrics.json`` with ``model`` (its parent directory) standing in for a missing name.

    MetricsRecord.read would take the *set* directory's name as the model name in the nested layout.
    """
    data = json.loads((directory / "metrics.json").read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("top level is not a JSON object")
    return MetricsRecord.from_json(data, model, directory)


def load_evaluations(eval_dir: Path, missing: list[str]) -> list[MetricsRecord]:
    """Every ``<model>/<set>/metrics.json`` (and old flat ``<model>/metrics.json``); a bad file is noted, not fatal."""
    evals: list[MetricsRecord] = []
    per_set_paths = sorted(eval_dir.glob("*/*/metrics.json"))
    per_set = {p.parent.parent for p in per_set_paths}
    flat = []
    for path in sorted(eval_dir.glob("*/metrics.json")):
        if path.parent in per_set:  # a leftover of the flat layout beside per-set results: stale, not a second record
            missing.append(f"{path}: old flat-layout record beside {path.parent.name}'s per-set results; ignored.")
        else:
            flat.append(path)
    for path in per_set_paths + flat:
        nested = path.parent.parent != eval_dir
        model = path.parent.parent.name if nested else path.parent.name
        try:
            evals.append(_read(path.parent, model))
        except (OSError, ValueError) as exc:
            missing.append(
                f"{path}: unreadable ({exc}); {model} on {path.parent.name if nested else 'its set'} "
                "left out of the report."
            )
    for ev in evals:
        if (label := unknown_label(ev)) is not None:
            missing.append(
                f"{ev.name} on {set_name(ev)}: dataset_label {label!r} is not a data set of any paper's table "
                f"({', '.join(pub.DATASET_LABELS)}): shown only in the all-measured table."
            )
    if not evals:
        missing.append(
            f"No evaluation results: no */<set>/metrics.json under {eval_dir}. Run the evaluate stage first."
        )
    else:
        _note_missing_baselines(evals, eval_dir, missing)
    return evals


def _note_missing_baselines(evals: list[MetricsRecord], eval_dir: Path, missing: list[str]) -> None:
    have = {set_name(ev) for ev in evals if ev.is_baseline}
    for name in sorted({set_name(ev) for ev in evals} - have):
        missing.append(f"No gray baseline on {name}: {eval_dir / GRAY / name / 'metrics.json'} not found.")


# ---------------------------------------------------------------------- indexing


@dataclass
class EvalIndex:
    """All records, by set, and the one record of each (model, paper data set): the only way a table finds a
    measured cell. A second set of one model claiming the same paper data set is noted in ``duplicates``."""

    records: list[MetricsRecord]
    _by_label: dict[tuple[str, str], MetricsRecord] = field(init=False, default_factory=dict)
    duplicates: list[str] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        for ev in self.records:
            label = set_label(ev)
            if label is None:
                continue
            key = (ev.name, label)
            if key in self._by_label:  # two sets claim the same paper data set for one model: keep the first
                self.duplicates.append(
                    f"{ev.name}: sets {set_name(self._by_label[key])} and {set_name(ev)} both say "
                    f"they are {label!r}; the table cell uses {set_name(self._by_label[key])}."
                )
                continue
            self._by_label[key] = ev

    def cell(self, model: str, label: str) -> MetricsRecord | None:
        """The one record a paper-table cell (method row ↔ ``model``, data-set column ``label``) may show."""
        return self._by_label.get((model, label))

    def models_on(self, labels: tuple[str, ...] | list[str]) -> list[str]:
        """Models (gray baseline last) with a record on any of ``labels``, in the tables' row order."""
        first = {}
        for (model, label), ev in self._by_label.items():
            if label in labels:
                first.setdefault(model, ev)
        return [ev.name for ev in _row_order(list(first.values()))]

    def sets(self) -> list[str]:
        """Set names: those a paper uses first (in the papers' order), then the others alphabetically."""

        def key(name: str) -> tuple[int, int, str]:
            label = self.label_of(name)
            return (0, pub.DATASET_LABELS.index(label), name) if label else (1, 0, name)

        return sorted({set_name(ev) for ev in self.records}, key=key)

    def on_set(self, name: str) -> list[MetricsRecord]:
        return _row_order([ev for ev in self.records if set_name(ev) == name])

    def label_of(self, name: str) -> str | None:
        """A set's paper label (from any of its records)."""
        return next((lab for ev in self.records if set_name(ev) == name and (lab := set_label(ev))), None)

    def sets_of(self, model: str) -> list[str]:
        return [set_name(ev) for ev in self.records if ev.name == model]


def _row_order(evals: list[MetricsRecord]) -> list[MetricsRecord]:
    """Models first (PalGAN family, then alphabetical), the gray baseline last."""
    return sorted(evals, key=lambda e: (e.is_baseline, not e.name.startswith("palgan"), e.name))


def set_title(name: str, label: str | None) -> str:
    """``imagenet_ctest10k (the papers' ImageNet ctest10k)`` or ``sample (no paper uses this set)``."""
    return f"{name} (the papers' {label})" if label else f"{name} (no paper uses this set)"


# ---------------------------------------------------------------------- sample images and palettes


def _pngs(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(folder.glob("*.png"))} if folder.is_dir() else {}


def _baseline_dir(eval_dir: Path, records: list[MetricsRecord], name: str) -> Path:
    gray = next((ev for ev in records if ev.is_baseline and ev.path is not None), None)
    return gray.path if gray is not None else eval_dir / GRAY / name


def comparison_columns(
    eval_dir: Path, index: EvalIndex, name: str, n: int, missing: list[str]
) -> tuple[list[tuple[str, dict[str, Path]]], list[str]]:
    """Grid columns for set ``name`` (gray input, ground truth, each model on that set) and the first ``n``
    sample names."""
    records = index.on_set(name)
    base = _baseline_dir(eval_dir, records, name)
    gray, truth = _pngs(base / "samples"), _pngs(base / "ground_truth")
    if not gray:
        missing.append(f"{name}: gray inputs {base / 'samples'}/*.png not found: its grid shows placeholders.")
    if not truth:
        missing.append(f"{name}: ground truth {base / 'ground_truth'}/*.png not found: its grid shows placeholders.")
    columns = [("gray input", gray), ("ground truth", truth)]
    for ev in records:
        if ev.is_baseline or ev.path is None:
            continue
        files = _pngs(ev.path / "samples")
        if not files:
            missing.append(f"{ev.name} on {name}: no sample PNGs in {ev.path / 'samples'}.")
        columns.append((ev.name, files))
    names = sorted(set(truth) | set(gray)) or sorted({s for _, files in columns for s in files})
    return columns, names[:n]


def is_palette_model(ev: MetricsRecord) -> bool:
    return ev.arch == "palgan" or ev.name.startswith("palgan")


def palette_grid(array: np.ndarray) -> np.ndarray:
    """(N, H, W) as saved, or (N, K) with K a square number reshaped to (N, √K, √K): the grid comes from the file.

    Raises ValueError for any other shape, so a changed palette format is reported rather than drawn wrong.
    """
    a = np.asarray(array, dtype=float)
    if a.ndim == 3:
        return a
    if a.ndim == 2:
        side = int(round(a.shape[1] ** 0.5))
        if side * side == a.shape[1]:
            return a.reshape(len(a), side, side)
    raise ValueError(f"palette array of shape {a.shape}: expected (N, H, W) or (N, K) with K a square number")


def load_palettes(index: EvalIndex, name: str, missing: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """``palettes.npz`` (pred, gt) of each PalGAN-family model on set ``name``; bad or absent files noted."""
    out = {}
    for ev in index.on_set(name):
        if not is_palette_model(ev) or ev.path is None:
            continue
        path = ev.path / "palettes.npz"
        if not path.is_file():
            missing.append(f"{ev.name} on {name}: {path} not found: no palette figure for it.")
            continue
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: palette_grid(z[k]) for k in ("pred", "gt")}
        except (OSError, KeyError, ValueError) as exc:
            missing.append(f"{ev.name} on {name}: {path} unusable ({type(exc).__name__}: {exc}).")
            continue
        if arrays["pred"].shape[1:] != arrays["gt"].shape[1:]:
            missing.append(
                f"{ev.name} on {name}: {path}: pred grid {arrays['pred'].shape[1:]} ≠ gt grid {arrays['gt'].shape[1:]}."
            )
            continue
        out[ev.name] = arrays
    return out
