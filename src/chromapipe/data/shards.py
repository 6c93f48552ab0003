"""Memory-mappable image shards: the on-disk form of a prepared split.

Format: ``shard-NNNNN.<suffix>.npy`` (N, 3, S, S) in the dataset's encoding (see
:mod:`chromapipe.data.encoding`: ``.lab.npy`` float16 L*a*b*, ``.lab8.npy`` OpenCV 8-bit Lab,
``.rgb8.npy`` sRGB uint8) and ``shard-NNNNN.labels.npy`` int64 (N,). Plain ``.npy`` files open with
``np.load(mmap_mode="r")``, so a training worker touches only the images it reads. Whatever the
encoding, :class:`LabShardDataset` returns float L*a*b*. The manifest's shard entry
(:class:`chromapipe.data.manifest.Shard`) names the pixel file ``lab`` (for every encoding: the name predates the
others) and the labels file ``labels``.
float16 is 6 bytes per pixel (393,216 bytes per 256² image); its rounding (≤ 0.03 in L*, ≤ 0.06 in a*b*)
is below one step of 8-bit sRGB, so L*a*b* -> sRGB uint8 reproduces the source pixels (tests assert the
exact bound for every encoding).
"""

from __future__ import annotations

import dataclasses
import io
from bisect import bisect_right
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from chromapipe.data.encoding import decode_to_lab, encode_lab, storage_format, stored_to_lab
from chromapipe.data.manifest import Shard, read_manifest
from chromapipe.hashing import sha256_file
from chromapipe.layout import MANIFEST_FILE

LAB_DTYPE = np.float16  # the float16 encoding's dtype (kept for callers of the original format)


def npy_header(dtype: type, shape: tuple[int, ...]) -> bytes:
    """The ``.npy`` header ``np.save`` writes for an array of this dtype and shape. NumPy pads it so
    that its length does not depend on the first dimension's digits, which lets a shard file be written
    before its final length is known and its header patched in place."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()


@dataclass
class ShardWriter:
    """Streams images into the open shard file, ``shard_size`` per file.

    Nothing is buffered but the labels and ids: each image goes straight to the file (the bytes are
    those ``np.save`` would write for the stacked shard), so the writer's memory does not grow with
    ``shard_size``. The header is written for a full shard and patched for a shorter last one. A closed
    shard is hashed from the file, by ``executor`` when one is given (the prepare stage's process pool:
    the SHA-256 of every byte written is then computed in parallel, off the one process that writes),
    else at once; :meth:`finish` waits for the hashes. Images arrive already encoded
    (:meth:`add_encoded`, what the prepare stage does) or as float L*a*b* (:meth:`add`).
    """

    directory: Path
    shard_size: int
    encoding: str = "float16"
    executor: Executor | None = None
    shards: list[Shard] = field(default_factory=list)
    _file: BinaryIO | None = None
    _shape: tuple[int, ...] | None = None
    _n: int = 0
    _labels: list[int] = field(default_factory=list)
    _ids: list[str] = field(default_factory=list)
    _pending: list[tuple[int, Future[str]]] = field(default_factory=list)  # (shard index, its pixel file's hash)

    def __post_init__(self) -> None:
        self.format = storage_format(self.encoding)
        self.directory.mkdir(parents=True, exist_ok=True)

    def add(self, lab: torch.Tensor, label: int, ident: str) -> None:
        """One image as float L*a*b* (3, S, S), encoded here."""
        self.add_encoded(encode_lab(lab, self.encoding), label, ident)

    def add_encoded(self, pixels: np.ndarray, label: int, ident: str) -> None:
        """One image (3, S, S) already in this writer's encoding."""
        if pixels.dtype != self.format.dtype:
            raise TypeError(f"{self.encoding} shards hold {np.dtype(self.format.dtype).name}, got {pixels.dtype}")
        if self._shape is not None and pixels.shape != self._shape:
            raise ValueError(f"image shape {pixels.shape} differs from the shard's {self._shape}")
        self._shape = pixels.shape
        if self._file is None:
            self._file = open(self.directory / self._lab_name(), "wb")
            self._file.write(npy_header(self.format.dtype, (self.shard_size, *self._shape)))
        self._file.write(memoryview(np.ascontiguousarray(pixels)).cast("B"))
        self._n += 1
        self._labels.append(label)
        self._ids.append(ident)
        if self._n >= self.shard_size:
            self.flush()

    def _lab_name(self) -> str:
        return f"shard-{len(self.shards):05d}.{self.format.suffix}.npy"

    def flush(self) -> None:
        """Finish the current shard (the next image starts a new one)."""
        if not self._n:
            return
        assert self._file is not None and self._shape is not None
        lab_path = Path(self._file.name)
        if self._n < self.shard_size:  # a shorter last shard: its true length into the header
            self._file.seek(0)
            self._file.write(npy_header(self.format.dtype, (self._n, *self._shape)))
        self._file.close()
        self._file = None
        label_path = lab_path.with_name(lab_path.name.split(".")[0] + ".labels.npy")
        np.save(label_path, np.asarray(self._labels, dtype=np.int64))
        labels_digest = sha256_file(label_path)
        lab_digest = sha256_file(lab_path) if self.executor is None else ""  # pending: filled in by finish()
        shard = Shard(
            lab=lab_path.name,
            labels=label_path.name,
            n=self._n,
            sha256={lab_path.name: lab_digest, label_path.name: labels_digest},
            ids=list(self._ids),
        )
        if self.executor is not None:
            self._pending.append((len(self.shards), self.executor.submit(sha256_file, lab_path)))
        self.shards.append(shard)
        self._n, self._labels, self._ids = 0, [], []

    def finish(self) -> list[Shard]:
        """Flush, wait for the shards' hashes; the shard entries for the manifest."""
        self.flush()
        for k, future in self._pending:
            s = self.shards[k]
            self.shards[k] = dataclasses.replace(s, sha256={s.lab: future.result(), s.labels: s.sha256[s.labels]})
        self._pending.clear()
        return self.shards

    @property
    def count(self) -> int:
        return sum(s.n for s in self.shards) + self._n


class LabShardDataset(Dataset):
    """One split of prepared shards as a map-style dataset of {"L", "ab", "label"} tensors.

    Images are decoded from the shards' encoding to float L*a*b* and resized from the stored size to
    ``resolution`` on read (antialiased), so models at other resolutions (ChromaGAN's 224²) share one
    preparation. An item is ``dataset[index]``, or ``dataset[(index, flip)]`` to have it flipped horizontally:
    training draws the flips (the thesis' random flip, docs/papers.md#thesis-data-and-splits) in its batch
    sampler (``chromapipe.training.sampling``), as a function of the seed and the step, so a flip never depends
    on which process loads the image or how many workers train.

    With ``decode=False`` an item is the image as stored ({"stored", "flip", "label"}: 3 or 6 bytes per
    pixel instead of float32's 12) and :meth:`decode_batch` finishes a collated batch wherever it lies,
    e.g. on the GPU. Why: at GPU rates the loader's serial path (worker shared memory, collation, pinned
    copy) moves every byte of every image; shipping the stored form moves 2-4× fewer. The flip travels with
    the stored item, so both paths give the same batches.
    """

    def __init__(
        self,
        root: Path,
        split: str,
        resolution: int | None = None,
        limit: int | None = None,
        decode: bool = True,
    ) -> None:
        manifest = read_manifest(root)
        if split not in manifest.splits:
            raise KeyError(f"split {split!r} not in {root / MANIFEST_FILE}")
        self.directory = root / split
        self.shards = manifest.splits[split].shards
        self.size = manifest.size
        self.encoding = manifest.storage.encoding
        self.resolution = resolution or self.size
        self.decode = decode
        self.offsets = np.cumsum([0] + [s.n for s in self.shards]).tolist()
        self.length = self.offsets[-1] if limit is None else min(limit, self.offsets[-1])
        self._arrays: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.length

    def _shard(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k not in self._arrays:  # opened lazily, per process: memmaps do not cross fork/pickle well
            s = self.shards[k]
            self._arrays[k] = (
                np.load(self.directory / s.lab, mmap_mode="r"),
                np.load(self.directory / s.labels, mmap_mode="r"),
            )
        return self._arrays[k]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": {}}

    def __getitem__(self, key: int | tuple[int, bool]) -> dict[str, torch.Tensor]:
        index, flip = key if isinstance(key, tuple) else (key, False)
        if not 0 <= index < self.length:
            raise IndexError(index)
        k = bisect_right(self.offsets, index) - 1
        lab_arr, label_arr = self._shard(k)
        stored = lab_arr[index - self.offsets[k]]
        label = torch.tensor(int(label_arr[index - self.offsets[k]]))
        if not self.decode:
            return {"stored": torch.from_numpy(np.array(stored)), "flip": torch.tensor(bool(flip)), "label": label}
        lab = self._resize(decode_to_lab(stored, self.encoding)[None])[0]
        if flip:
            lab = lab.flip(-1)
        return {"L": lab[:1], "ab": lab[1:], "label": label}

    def _resize(self, lab: torch.Tensor) -> torch.Tensor:
        """Float L*a*b* (N, 3, S, S) at ``resolution``."""
        if self.resolution == self.size:
            return lab
        return F.interpolate(
            lab, size=(self.resolution, self.resolution), mode="bilinear", antialias=True, align_corners=False
        )

    def decode_batch(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A collated batch of stored items -> {"L", "ab", "label"} on the batch's device: the arithmetic of
        ``__getitem__`` with ``decode=True``, for the whole batch at once (and no host sync: the flips are a
        per-image select)."""
        lab = self._resize(stored_to_lab(batch["stored"], self.encoding))
        lab = torch.where(batch["flip"].view(-1, 1, 1, 1), lab.flip(-1), lab)
        return {"L": lab[:, :1].contiguous(), "ab": lab[:, 1:].contiguous(), "label": batch["label"]}
