"""How a prepared image is stored in a shard: ``float16`` L*a*b*, 8-bit ``lab8``, or the ``rgb8`` pixels.

Every encoding reads back as the same float L*a*b* units (L* in [0, 100], a*, b* in Lab units), so the
training code does not know which one it is reading. They trade disk for exactness and read cost
(round-trip error = max |Δ| between the source crop's sRGB uint8 pixels and the shard read back as
L*a*b* and converted to sRGB uint8, every pixel of 702 crops of 256² from 800 ImageNet photos;
``ROUNDTRIP_BOUND`` holds the bounds the tests assert on real photos):

- ``float16``: L*, a*, b* as float16, 6 bytes/px. Rounding (≤ 0.03 L*, ≤ 0.06 a*b*) is below one step of
  8-bit sRGB: max error 1 (99.997 % of values exact).
- ``lab8``: OpenCV's 8-bit L*a*b* convention (L*·255/100, a* + 128, b* + 128, rounded), 3 bytes/px.
  Lossy: one step is 0.39 L* or 1 a*b* unit; max error 22 (saturated dark colors, where one a*b* unit
  is many sRGB steps), 66 % of values exact, 99 % within 1.
- ``rgb8``: the sRGB uint8 crop itself, 3 bytes/px, lossless with respect to the decoded source (max
  error 0); the conversion to L*a*b* moves to read time (a table lookup; its cost per image:
  reports/benchmarks.md, section "Prepare: source photos → shards").

The manifest's round-trip error is measured on a strided sample of each stored image (every
``ROUNDTRIP_STEP``-th row and column), not on every pixel: it is a check of the encoding, not a product.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from chromapipe.color import lab_to_rgb_uint8, rgb_uint8_to_lab_fast
from chromapipe.data.manifest import Storage

Encoding = Literal["float16", "lab8", "rgb8"]

#: max round-trip error (sRGB uint8 steps) of each encoding on real photos, lab8's with a margin over the
#: worst seen (reports/benchmarks.md, section "Prepare: source photos → shards")
ROUNDTRIP_BOUND = {"float16": 1, "lab8": 24, "rgb8": 0}

#: rows and columns between the pixels the round-trip check converts back (1/64 of the pixels)
ROUNDTRIP_STEP = 8


@dataclass(frozen=True)
class StorageFormat:
    name: str
    dtype: type
    suffix: str  # shard file name: shard-NNNNN.<suffix>.npy
    layout: str

    def bytes_per_image(self, size: int) -> int:
        return 3 * size * size * np.dtype(self.dtype).itemsize

    def describe(self, size: int) -> Storage:
        """The manifest's ``storage`` entry."""
        return Storage(
            encoding=self.name,
            dtype=np.dtype(self.dtype).name,
            layout=self.layout,
            bytes_per_image=self.bytes_per_image(size),
        )


FORMATS: dict[str, StorageFormat] = {
    "float16": StorageFormat("float16", np.float16, "lab", "N,3,S,S (L*, a*, b*)"),
    "lab8": StorageFormat("lab8", np.uint8, "lab8", "N,3,S,S (L*·255/100, a*+128, b*+128), uint8, OpenCV's 8-bit Lab"),
    "rgb8": StorageFormat("rgb8", np.uint8, "rgb8", "N,3,S,S sRGB uint8 (converted to L*a*b* on read)"),
}


def storage_format(encoding: str) -> StorageFormat:
    if encoding not in FORMATS:
        raise ValueError(f"unknown shard encoding {encoding!r}; expected one of {', '.join(FORMATS)}")
    return FORMATS[encoding]


def _lab_to_lab8(lab: torch.Tensor) -> torch.Tensor:
    """Float L*a*b* (..., 3, H, W) -> OpenCV 8-bit Lab, overwriting ``lab`` (callers pass their own copy)."""
    lab.select(-3, 0).mul_(255.0 / 100.0)
    lab.narrow(-3, 1, 2).add_(128.0)
    return lab.round_().clamp_(0, 255).to(torch.uint8)


def _lab8_to_lab(lab8: torch.Tensor) -> torch.Tensor:
    v = lab8.float()
    return torch.stack([v[..., 0, :, :] * (100.0 / 255.0), v[..., 1, :, :] - 128.0, v[..., 2, :, :] - 128.0], dim=-3)


def encode_rgb(rgb: torch.Tensor, encoding: str) -> np.ndarray:
    """sRGB uint8 views (..., 3, S, S) -> their stored form (a NumPy array: cheap to pickle and save)."""
    if encoding == "rgb8":
        return rgb.contiguous().numpy()
    lab = rgb_uint8_to_lab_fast(rgb)
    if encoding == "float16":
        return lab.to(torch.float16).numpy()
    return _lab_to_lab8(lab).numpy()  # lab is ours: converted in place


def encode_lab(lab: torch.Tensor, encoding: str) -> np.ndarray:
    """Float L*a*b* (..., 3, S, S) -> stored form (``rgb8`` goes through sRGB uint8, rounding to it)."""
    if encoding == "float16":
        return lab.to(torch.float16).numpy()
    if encoding == "lab8":
        return _lab_to_lab8(lab.float().clone()).numpy()
    return lab_to_rgb_uint8(lab.float()).numpy()


def decode_to_lab(stored: np.ndarray, encoding: str) -> torch.Tensor:
    """Stored form (..., 3, S, S) -> float32 L*a*b*: what :class:`LabShardDataset` returns."""
    if encoding == "float16":  # one pass: float16 (possibly a read-only memmap) -> new float32 array
        return torch.from_numpy(np.asarray(stored, dtype=np.float32))
    return stored_to_lab(
        torch.from_numpy(np.array(stored, dtype=np.uint8)), encoding
    )  # a writable copy of the (memmapped) bytes


def stored_to_lab(stored: torch.Tensor, encoding: str) -> torch.Tensor:
    """Stored form as a tensor (..., 3, S, S), on any device -> float32 L*a*b* there. The same arithmetic
    as :func:`decode_to_lab`: training runs it on the GPU for whole batches (``train.input_decode``)."""
    if encoding == "float16":
        return stored.float()
    if encoding == "lab8":
        return _lab8_to_lab(stored)
    return rgb_uint8_to_lab_fast(stored)


def sample_pixels(views: np.ndarray | torch.Tensor, step: int = ROUNDTRIP_STEP) -> np.ndarray | torch.Tensor:
    """Every ``step``-th row and column of (..., 3, S, S) views: what the round-trip check looks at."""
    return views[..., ::step, ::step]


def roundtrip_error(stored: np.ndarray, rgb: torch.Tensor, encoding: str, step: int = ROUNDTRIP_STEP) -> int:
    """Max |Δ| (0-255) between the sRGB uint8 views and their stored form read back as L*a*b* and
    converted to sRGB uint8, on every ``step``-th row and column."""
    back = lab_to_rgb_uint8(decode_to_lab(sample_pixels(stored, step), encoding))
    return int((back.int() - sample_pixels(rgb, step).int()).abs().max())
