"""The prepared dataset's manifest (``data/prepared/<dataset>/manifest.json``) as one typed, frozen record.

The prepare stage builds a :class:`Manifest` and writes it; the shard dataset, training (its data fingerprint and
the counts it logs), evaluation (the protocol in metrics.json), the benchmarks and the tests read it back with
:meth:`Manifest.read`. Why one owner: the file used to be a plain dict read by key in some twenty places, so a
renamed or dropped key failed (or silently read ``None``) far from where it was written. Here every field is named
once, typed, and checked on read, and a wrong file fails at once with an error naming it.

Standard library only (and the project's leaf modules ``layout`` and ``schema``): the report stage and any
tool that only inspects a dataset must not import torch to read it.

Format ``chromapipe-shards/3``; ``/2`` files read too. The only difference: ``/2`` also had a top-level
``n_sources``, always equal to ``n_listed`` (a second name for one number). ``/3`` drops it; the per-split
``n_sources`` (distinct source photos in that split) is another number and stays. The attributes have the
on-disk keys' names, so the file and the code say the same thing.

The containers inside (lists, dicts) are the JSON's own, for writing and hashing as they are: frozen means no
attribute is reassigned, and no reader mutates them.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from chromapipe.layout import MANIFEST_FILE
from chromapipe.schema import build_dataclass

#: what :meth:`Manifest.write` writes
FORMAT = "chromapipe-shards/3"
#: what :meth:`Manifest.read` accepts: /2 differs only by its top-level ``n_sources`` (dropped on reading)
READABLE_FORMATS = ("chromapipe-shards/2", FORMAT)
#: keys a /2 file has that the record does not keep: the duplicate count, ignored on reading
_DROPPED_FROM_2 = ("n_sources",)

PREPARE_HINT = "run the prepare stage: `dvc repro prepare`"


class ManifestError(ValueError):
    """A manifest that is missing, not JSON, of an unknown format or not of the schema; the message names the
    file and what is wrong."""


class ManifestMissing(ManifestError, FileNotFoundError):
    """No manifest where one was expected: the dataset was not prepared (a FileNotFoundError too, as before)."""


@dataclass(frozen=True)
class Shard:
    """One shard file pair of a split: what the dataset opens, how many images, which sources, their hashes."""

    #: the pixel file (``shard-NNNNN.{lab,lab8,rgb8}.npy``) in the split's directory; the key is ``lab`` for every
    #: encoding because it predates the others
    lab: str
    #: the int64 labels file (``shard-NNNNN.labels.npy``): the dataset reads the class label from it
    labels: str
    #: images in the shard: the dataset's index offsets, without opening the files
    n: int
    #: file name -> SHA-256 of both files: DVC-independent proof of the bytes; training's data fingerprint hashes
    #: the train split's (so a run's name changes when its data does)
    sha256: dict[str, str]
    #: the source id of each image in order (``path#k`` for crop k of a photo): which photo is where, and the split
    #: file's row order, checkable
    ids: list[str]


@dataclass(frozen=True)
class Split:
    """One of train / val / test."""

    #: images (crops counted) in the split: training logs it, evaluation's protocol and the report cite it
    n_images: int
    #: distinct source photos in the split that gave at least one image (skipped ones not counted): with
    #: ``crops_per_image`` > 1 it differs from ``n_images``; evaluation's protocol states it as ``n_sources``
    n_sources: int
    #: the shards, in order: the split's images are their concatenation
    shards: list[Shard]

    @property
    def ids(self) -> list[str]:
        """Every image's source id, in the order the dataset serves them."""
        return [i for s in self.shards for i in s.ids]


@dataclass(frozen=True)
class Storage:
    """How the shards' pixels are stored (:mod:`chromapipe.data.encoding`); the dataset decodes by ``encoding``."""

    #: float16 | lab8 | rgb8: which decoder turns a stored image into float L*a*b*
    encoding: str
    #: the pixel file's NumPy dtype name, for anyone opening the ``.npy`` files without the code
    dtype: str
    #: what the (N, 3, S, S) axes and channels hold, in words
    layout: str
    #: bytes per stored image: disk cost, and what the loader moves per image
    bytes_per_image: int


@dataclass(frozen=True)
class Skip:
    """A listed file that gave no image, and why (the report and the tests count them by reason)."""

    #: the source id (path relative to the dataset root)
    source: str
    #: a reason code (``chromapipe.data.decode``'s, the filters', ``not_in_split_file``)
    reason: str
    #: the specific cause, in words (an exception message, a measured value)
    detail: str


@dataclass(frozen=True)
class RunFacts:
    """How and where the stage ran: the only part that differs between two runs with the same params (engines
    and worker counts give the same shards). Never hashed, never used to decide anything; for benchmarks."""

    #: local | ray
    engine: str
    #: processes (local) or the cluster's CPU parallelism (ray)
    workers: int
    #: sources per chunk of work
    chunk_size: int
    #: the nodes that computed chunks, in order of first appearance
    nodes: list[str]
    #: for each chunk, its node's index in ``nodes``
    chunk_nodes: list[int]
    #: the stage's wall time
    seconds: float
    #: listed sources per second of wall time (None when no time was measured)
    images_per_s: float | None
    #: the chunks' summed compute time (on every worker): with ``seconds``, how parallel the run was
    worker_seconds: float


@dataclass(frozen=True)
class SplitFileRecord:
    """The split file a train-role dataset was split by (``datasets.<name>.split_file``); its assignment itself is
    in the shards' ids."""

    #: the file as configured (resolved)
    path: str
    #: its SHA-256: DVC tracks the path, this says which contents were used
    sha256: str
    #: its rows (listed images)
    rows: int
    #: rows per split, as the file assigns them (before any skip)
    counts: dict[str, int]


@dataclass(frozen=True)
class Manifest:
    """Everything the prepare stage says about one prepared dataset. The on-disk keys are the field names, in
    this order, with ``format`` first and ``skipped_by_reason`` (derived from ``skipped``) after ``skipped``."""

    #: the DataConfig fields that determine the shards' contents (``prepare.content_params``: not workers,
    #: engine, label, ours), as configured: logged to MLflow and hashed into training's data fingerprint as they
    #: are. A mapping, not a typed copy: :class:`chromapipe.config.DataConfig` owns those fields' names and types
    params: dict[str, Any]
    #: train (split by photo into train/val/test) or eval (a fixed evaluation set: every readable image, in test)
    role: Literal["train", "eval"]
    #: class names (folder sources with class subfolders); an image's label indexes it; [] for unlabelled sources
    classes: list[str]
    #: source files considered: listed ones (split file or file list rows, or every image found) plus, with a
    #: split file, the images it leaves out; the denominator of every skip count and the eval-role check
    n_listed: int
    #: split name (train, val, test) -> the split
    splits: dict[str, Split]
    #: every listed file that gave no image, in source order
    skipped: list[Skip]
    #: skipped because no image could be read (missing, corrupt, not an image, too large...): role eval keeps
    #: every other image, so its test split holds exactly ``n_listed - n_unreadable``
    n_unreadable: int
    #: source photos found grayscale, whether kept (role eval, ``keep_grayscale``) or skipped
    n_grayscale: int
    #: kept images smaller than ``size`` that were upscaled (role eval, ``keep_small``)
    n_upscaled: int
    #: how the pixels are stored
    storage: Storage
    #: the largest sRGB uint8 error of stored -> L*a*b* -> sRGB over the sampled pixels: the encoding's loss,
    #: measured on this data (tests bound it per encoding)
    lab_roundtrip_max_abs_uint8: int
    #: which pixels that error was measured on, in words
    roundtrip_sample: str
    #: how and where the stage ran (not part of the data)
    run: RunFacts
    #: the split file, when the dataset has one
    split_file: SplitFileRecord | None = field(default=None)

    def __post_init__(self) -> None:
        for name, split in self.splits.items():
            held = sum(s.n for s in split.shards)
            if split.n_images != held:
                raise ValueError(f"splits.{name}: n_images is {split.n_images} but its shards hold {held} images")
            for k, s in enumerate(split.shards):
                if len(s.ids) != s.n:
                    raise ValueError(f"splits.{name}.shards[{k}]: n is {s.n} but it lists {len(s.ids)} ids")

    # -- derived -------------------------------------------------------------------------------------------------
    @property
    def skipped_by_reason(self) -> dict[str, int]:
        """Skip reason -> count, in order of first occurrence (written to the file too, for people reading it)."""
        return dict(Counter(s.reason for s in self.skipped))

    @property
    def size(self) -> int:
        """The stored images' side in pixels (``params.size``): the dataset resizes from it."""
        return int(self.params["size"])

    def split(self, name: str) -> Split:
        """Split ``name``; a KeyError naming the splits there are otherwise."""
        if name not in self.splits:
            raise KeyError(f"split {name!r} not in the manifest (it has {', '.join(self.splits)})")
        return self.splits[name]

    def image_counts(self) -> dict[str, int]:
        """Split -> images: what training logs to MLflow (``data_counts.<split>``) and the stage logs."""
        return {name: s.n_images for name, s in self.splits.items()}

    def data_fingerprint(self) -> dict[str, Any]:
        """What training's run hash takes from the data: the content params and the train shards' SHA-256s.

        The same value the dict manifest gave (``{"params": ..., "shards": [shard sha256 dicts]}``), so an
        unchanged dataset keeps its run names; only the train split counts (val and test do not train)."""
        return {"params": self.params, "shards": [s.sha256 for s in self.split("train").shards]}

    # -- JSON ----------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The on-disk form: the same keys, in the same order, as the dict manifests had (less ``n_sources``)."""
        out: dict[str, Any] = {
            "format": FORMAT,
            "params": self.params,
            "role": self.role,
            "classes": list(self.classes),
            "n_listed": self.n_listed,
            "splits": {
                name: {
                    "n_images": s.n_images,
                    "n_sources": s.n_sources,
                    "shards": [_record(sh) for sh in s.shards],
                }
                for name, s in self.splits.items()
            },
            "skipped": [_record(s) for s in self.skipped],
            "skipped_by_reason": self.skipped_by_reason,
            "n_unreadable": self.n_unreadable,
            "n_grayscale": self.n_grayscale,
            "n_upscaled": self.n_upscaled,
            "storage": _record(self.storage),
            "lab_roundtrip_max_abs_uint8": self.lab_roundtrip_max_abs_uint8,
            "roundtrip_sample": self.roundtrip_sample,
            "run": _record(self.run),
        }
        if self.split_file is not None:
            out["split_file"] = _record(self.split_file)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def write(self, root: Path) -> Path:
        """Write ``<root>/manifest.json`` (creating ``root``); returns its path."""
        root.mkdir(parents=True, exist_ok=True)
        path = root / MANIFEST_FILE
        path.write_text(self.to_json())
        return path

    @classmethod
    def from_dict(cls, raw: Any, where: str = MANIFEST_FILE) -> Manifest:
        """Build from the parsed JSON; a :class:`ManifestError` naming ``where`` and the key if it does not fit."""
        if not isinstance(raw, dict):
            raise _malformed(where, f"not a manifest (expected a JSON object, got {type(raw).__name__})")
        fmt = raw.get("format")
        if fmt is None:
            raise _malformed(where, "no 'format' key: not a chromapipe-shards manifest")
        if fmt not in READABLE_FORMATS:
            raise _malformed(where, f"format {fmt!r} is not one this version reads ({', '.join(READABLE_FORMATS)})")
        body = {k: v for k, v in raw.items() if k not in ("format", "skipped_by_reason")}
        if fmt != FORMAT:
            for key in _DROPPED_FROM_2:
                body.pop(key, None)
        try:
            manifest = build_dataclass(cls, body, "")
        except ValueError as exc:  # the schema's ConfigError (key path and what is allowed) or __post_init__'s
            raise _malformed(where, str(exc)) from None
        stored = raw.get("skipped_by_reason")
        if stored is not None and stored != manifest.skipped_by_reason:
            raise _malformed(
                where, f"skipped_by_reason {stored} does not match the skipped list ({manifest.skipped_by_reason})"
            )
        return manifest

    @classmethod
    def read(cls, root: Path) -> Manifest:
        """``<root>/manifest.json``; a :class:`ManifestError` naming the file if it is missing or malformed."""
        path = root / MANIFEST_FILE
        if not path.is_file():
            raise ManifestMissing(f"{path}: no prepared data ({PREPARE_HINT})")
        try:
            raw = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _malformed(str(path), f"not valid JSON ({exc})") from None
        return cls.from_dict(raw, str(path))


def _malformed(where: str, what: str) -> ManifestError:
    return ManifestError(f"{where}: {what} ({PREPARE_HINT} to rewrite it)")


def read_manifest(root: Path) -> Manifest:
    """The manifest of the dataset prepared in ``root`` (:meth:`Manifest.read`)."""
    return Manifest.read(root)


def _record(obj: Any) -> dict[str, Any]:
    """A flat record's fields as a JSON object, in declaration order (lists and dicts copied)."""
    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        out[f.name] = list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v
    return out
