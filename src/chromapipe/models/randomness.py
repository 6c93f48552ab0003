"""Per-sample random draws that do not depend on how a global batch is split over workers.

Why: with N data-parallel workers each one computes on its ``B / N`` images. A draw such as
``torch.rand(local_batch, C)`` gives image ``i`` of the global batch a different mask on every N (on one
worker it is row ``i`` of a ``B``-row draw, on two it is row ``i - B/2`` of rank 1's ``B/2``-row draw, from
another stream position), so dropout masks, gradient-penalty interpolation weights and the like — and with
them the trained model — change with the number of workers. Here every worker draws the rows of the *whole*
global batch from the same random stream and keeps its own rows: image ``i`` gets the same numbers whatever N.

The trainer declares the split with :func:`batch_split` (this worker's rank and the number of workers);
every worker seeds the same stream (``training.trainer.seed_everything``). Outside the block (inference,
evaluation, tests, one worker) :func:`per_sample_rand` is plain ``torch.rand``. The cost is drawing N times
the numbers, only for the per-sample draws (a few small masks per step).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

_split: tuple[int, int] = (0, 1)  # (this worker's rank, number of workers) for the draws of the running step


@contextmanager
def batch_split(rank: int, world_size: int) -> Iterator[None]:
    """Inside the block, the batch a network sees is rank ``rank``'s contiguous slice of a global batch made of
    ``world_size`` such slices."""
    global _split
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, {world_size})")
    previous, _split = _split, (rank, world_size)
    try:
        yield
    finally:
        _split = previous


def per_sample_rand(shape: tuple[int, ...], device: torch.device | str | None = None) -> torch.Tensor:
    """``torch.rand(shape)`` (float32) whose first dimension indexes this worker's samples, drawn so that each
    sample of the global batch gets the same numbers whatever the number of workers."""
    rank, world = _split
    if world == 1:
        return torch.rand(shape, device=device)
    local = shape[0]
    whole = torch.rand((local * world, *shape[1:]), device=device)
    return whole[rank * local : (rank + 1) * local]


class SampleDropout(nn.Module):
    """Dropout whose masks come from :func:`per_sample_rand`: ``nn.Dropout`` (``channelwise=False``, one draw
    per element) or ``nn.Dropout2d`` (``channelwise=True``, one draw per channel of each sample), the same
    function with masks that do not depend on the number of workers. No parameters or buffers: generator
    files and checkpoints are unchanged."""

    def __init__(self, p: float = 0.5, channelwise: bool = False) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p, self.channelwise = p, channelwise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        shape = (*x.shape[:2], *([1] * (x.dim() - 2))) if self.channelwise else tuple(x.shape)
        keep = per_sample_rand(shape, x.device) >= self.p
        return x * keep.to(x.dtype) / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}, channelwise={self.channelwise}"
