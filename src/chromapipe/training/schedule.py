"""Training length and learning-rate schedules, in optimiser steps of the *global* batch.

``models.<name>.batch_size`` is the batch the paper states, summed over all Ray workers: N workers each
take ``batch_size / N`` images per step, so steps, epochs and schedules do not depend on how many
workers run — the same params give the same optimisation on a laptop and on a cluster. Ray-free, so
benchmarks and the fit checks import it without starting anything.
"""

from __future__ import annotations

import math

import torch

from chromapipe.config import ModelConfig


def total_steps(cfg: ModelConfig, n_train: int) -> int:
    """Training length in iterations: ``steps`` as given, or ``epochs`` passes of the global batch over the
    training split."""
    if cfg.steps is not None:
        return cfg.steps
    assert cfg.epochs is not None
    return max(1, math.ceil(cfg.epochs * n_train / cfg.batch_size))


def make_scheduler(opt: torch.optim.Optimizer, cfg: ModelConfig, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """``constant`` or ``cosine`` (to ``lr_min`` at the last step), stepped once per iteration."""
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps), eta_min=cfg.lr_min)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
