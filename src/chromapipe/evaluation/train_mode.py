"""Scoring a generator in train mode, as the thesis did, without changing the generator.

Why: the thesis' only test path is its validation loop, which calls ``generator.train()``: dropout stays on
(the pix2pix generator's noise) and every BatchNorm normalises each batch of 8 by that batch's own statistics.
Its published numbers are train-mode numbers; an eval-mode score (running statistics, no dropout) of the
same weights is a different measurement. Train mode is random (dropout) and depends on which images share a
batch, so the pass here is pinned down: batches in the set's stored order (a split file's row order, as the
thesis' ``shuffle=False`` loaders went through it), a seeded dropout RNG, and every buffer restored
afterwards — BatchNorm updates its running statistics in train mode even without gradients, and the same
generator is scored in eval mode and written to MLflow by the same process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from chromapipe.metrics.record import TRAIN_MODE_SUFFIX  # noqa: F401 - re-exported: the evaluate stage's keys


def train_mode_note(batch_size: int, seed: int) -> str:
    """How a train-mode number was measured (stored with it)."""
    return (
        f"generator in train mode as the thesis scored it: dropout on (RNG seed {seed}), BatchNorm over each "
        f"batch of {batch_size} in the set's stored order; the generator's buffers are restored afterwards"
    )


def ordered_batches(n: int, batch_size: int) -> list[list[int]]:
    """Indices ``0 … n-1`` in consecutive batches of ``batch_size``, in stored order. A last batch of a single
    image joins the batch before it: BatchNorm in train mode cannot normalise one value per channel (pix2pix's
    1×1 bottleneck), where the thesis' own loader would have stopped."""
    if n < 2:
        raise ValueError(f"train-mode scoring needs at least 2 images (BatchNorm over a batch), got {n}")
    batches = [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        last = batches.pop()
        batches[-1] += last
    return batches


@contextmanager
def generator_in_train_mode(G: nn.Module, seed: int) -> Iterator[nn.Module]:
    """``G`` in train mode with its dropout RNG seeded; on exit its mode, every buffer (BatchNorm running
    statistics, batch counters) and the caller's RNG state are what they were on entry."""
    saved = {name: buf.detach().clone() for name, buf in G.named_buffers()}
    was_training = G.training
    devices = sorted({b.device.index or 0 for b in saved.values() if b.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        G.train()
        try:
            yield G
        finally:
            G.train(was_training)
            with torch.no_grad():
                for name, buf in G.named_buffers():
                    buf.copy_(saved[name])
