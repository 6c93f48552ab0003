"""Which images, flipped or not, each worker trains on at each step: one global order, sliced by rank.

Why not ``DistributedSampler``: its per-rank interleaving happens to give the same *set* of images per step
for any number of workers, but (1) a resumed run must continue mid-epoch at the exact image it stopped at,
and a sampler whose only state is its epoch restarts the epoch; (2) the random horizontal flip was drawn in
the loader's worker processes, so which image was flipped depended on the number of workers, loader workers
and their seeds. Here both are a pure function of ``(seed, step)``:

- epoch ``e`` is a permutation of the training split drawn from ``torch.Generator().manual_seed(seed + e)``,
  with one flip bit per position drawn from the same generator;
- the global batch of step ``k`` is positions ``[i·B, (i+1)·B)`` of epoch ``k // steps_per_epoch``
  (``i = k mod steps_per_epoch``, ``steps_per_epoch = n // B``: the last incomplete batch is dropped, as
  before);
- rank ``r`` of ``N`` takes the contiguous slice ``[r·B/N, (r+1)·B/N)`` of it.

So the images of step ``k``, and their flips, are the same for any number of workers, and a sampler started
at step ``k`` yields exactly what an uninterrupted one yields from there on. Ray-free and torch-only.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

#: one item of a batch: (image index in the split, flip it horizontally?)
Draw = tuple[int, bool]


class GlobalBatchSampler(Sampler[list[Draw]]):
    """An endless batch sampler (``DataLoader(batch_sampler=...)``): this rank's share of each global batch,
    from step ``start_step`` on. Items are ``(index, flip)`` pairs for ``data.shards.LabShardDataset``."""

    def __init__(
        self,
        n_images: int,
        global_batch: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        hflip: bool = False,
        start_step: int = 0,
    ) -> None:
        if global_batch % world_size:
            raise ValueError(f"global batch {global_batch} does not divide over {world_size} workers")
        if n_images < global_batch:
            raise ValueError(f"the global batch {global_batch} exceeds the {n_images} training images")
        self.n, self.global_batch, self.seed = n_images, global_batch, seed
        self.rank, self.world_size, self.hflip, self.start_step = rank, world_size, hflip, start_step
        self.local_batch = global_batch // world_size
        self.steps_per_epoch = n_images // global_batch
        self._epoch: tuple[int, torch.Tensor, torch.Tensor] | None = None

    def epoch_order(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(permutation of the split, flip bit per position) of epoch ``epoch``."""
        if self._epoch is None or self._epoch[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(self.n, generator=generator)
            flips = torch.rand(self.n, generator=generator) < 0.5
            self._epoch = (epoch, order, flips & self.hflip)
        return self._epoch[1], self._epoch[2]

    def draws(self, step: int) -> list[Draw]:
        """This rank's images of global step ``step`` (0-based)."""
        epoch, i = divmod(step, self.steps_per_epoch)
        order, flips = self.epoch_order(epoch)
        start = i * self.global_batch + self.rank * self.local_batch
        positions = range(start, start + self.local_batch)
        return [(int(order[p]), bool(flips[p])) for p in positions]

    def __iter__(self) -> Iterator[list[Draw]]:
        step = self.start_step
        while True:
            yield self.draws(step)
            step += 1
