"""The one device picker: ``auto`` means the GPU when there is one; an explicit ``cuda`` without a GPU is an
error rather than a silent (and far slower: reports/benchmarks.md, "Training throughput (images/s)") CPU run."""

from __future__ import annotations

import torch


class DeviceUnavailable(ValueError):
    """The requested device does not exist on this machine."""


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(f"device {name!r}: no CUDA device available (use cpu or auto)")
    return device
