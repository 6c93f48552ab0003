"""Memory-mappable L*a*b* shards: the on-disk form of a prepared split.

Format: ``shard-NNNNN.lab.npy`` float16 (N, 3, S, S) holding L* in [0, 100] and a*, b* in Lab units,
and ``shard-NNNNN.labels.npy`` int64 (N,). Plain ``.npy`` files open with ``np.load(mmap_mode="r")``,
so a training worker touches only the images it reads. float16 is 6 bytes per pixel
(393,216 bytes per 256² image); its rounding (≤ 0.03 in L*, ≤ 0.06 in a*b*) is below one step of
8-bit sRGB, so L*a*b* -> sRGB uint8 reproduces the source pixels (tests assert the exact bound).
"""

from __future__ import annotations

import json
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from chromapipe.hashing import sha256_file

LAB_DTYPE = np.float16


@dataclass
class ShardWriter:
    """Buffers at most ``shard_size`` images, then writes a shard: memory is bounded by one shard."""

    directory: Path
    shard_size: int
    shards: list[dict[str, Any]] = field(default_factory=list)
    _lab: list[np.ndarray] = field(default_factory=list)
    _labels: list[int] = field(default_factory=list)
    _ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    def add(self, lab: torch.Tensor, label: int, ident: str) -> None:
        self._lab.append(lab.to(torch.float16).numpy())
        self._labels.append(label)
        self._ids.append(ident)
        if len(self._lab) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self._lab:
            return
        stem = f"shard-{len(self.shards):05d}"
        lab_path = self.directory / f"{stem}.lab.npy"
        label_path = self.directory / f"{stem}.labels.npy"
        np.save(lab_path, np.stack(self._lab).astype(LAB_DTYPE))
        np.save(label_path, np.asarray(self._labels, dtype=np.int64))
        self.shards.append(
            {
                "lab": lab_path.name,
                "labels": label_path.name,
                "n": len(self._lab),
                "sha256": {lab_path.name: sha256_file(lab_path), label_path.name: sha256_file(label_path)},
                "ids": list(self._ids),
            }
        )
        self._lab, self._labels, self._ids = [], [], []

    @property
    def count(self) -> int:
        return sum(s["n"] for s in self.shards) + len(self._lab)


def read_manifest(root: Path) -> dict[str, Any]:
    path = root / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no prepared data (run the prepare stage: `dvc repro prepare`)")
    return json.loads(path.read_text())


class LabShardDataset(Dataset):
    """One split of prepared shards as a map-style dataset of {"L", "ab", "label"} tensors.

    Images are resized from the stored size to ``resolution`` on read (antialiased), so models at other
    resolutions (ChromaGAN's 224²) share one preparation. ``hflip`` applies the papers' random horizontal
    flip with p = 0.5.
    """

    def __init__(self, root: Path, split: str, resolution: int | None = None, hflip: bool = False, limit: int | None = None) -> None:
        manifest = read_manifest(root)
        if split not in manifest["splits"]:
            raise KeyError(f"split {split!r} not in {root / 'manifest.json'}")
        self.directory = root / split
        self.shards = manifest["splits"][split]["shards"]
        self.size = manifest["params"]["size"]
        self.resolution = resolution or self.size
        self.hflip = hflip
        self.offsets = np.cumsum([0] + [s["n"] for s in self.shards]).tolist()
        self.length = self.offsets[-1] if limit is None else min(limit, self.offsets[-1])
        self._arrays: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.length

    def _shard(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k not in self._arrays:  # opened lazily, per process: memmaps do not cross fork/pickle well
            s = self.shards[k]
            self._arrays[k] = (
                np.load(self.directory / s["lab"], mmap_mode="r"),
                np.load(self.directory / s["labels"], mmap_mode="r"),
            )
        return self._arrays[k]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": {}}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        k = bisect_right(self.offsets, index) - 1
        lab_arr, label_arr = self._shard(k)
        lab = torch.from_numpy(np.asarray(lab_arr[index - self.offsets[k]], dtype=np.float32))
        if self.resolution != self.size:
            lab = F.interpolate(lab[None], size=(self.resolution, self.resolution), mode="bilinear", antialias=True, align_corners=False)[0]
        if self.hflip and torch.rand(()) < 0.5:
            lab = lab.flip(-1)
        return {"L": lab[:1], "ab": lab[1:], "label": torch.tensor(int(label_arr[index - self.offsets[k]]))}
