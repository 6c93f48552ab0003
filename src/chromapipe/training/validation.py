"""Validation during training: rank 0 scores a fixed subset of the val split every ``validate_every`` steps.

Why: a GAN's losses do not say whether it colorizes (a saturated discriminator, a branch that never
trains and a detach in the wrong place all look like "losses moving"). The same predictor call and metric
code as the evaluate stage (``Recipe.predict``, :func:`chromapipe.metrics.scoring.score_batches`) give
``val/psnr``, ``val/ssim``, ``val/lpips``, ``val/cf``, ``val/delta_cf`` per step in the model's MLflow
run, beside the gray baseline's values (``val_gray/*``, logged once) as the line to beat.

It never changes training: the generator runs in eval mode without autograd and is put back in train
mode, and the RNG state (CPU and CUDA) is restored afterwards, so a run with validation takes exactly the
same optimisation steps as one without. Its cost is bounded by ``validate_images`` forward passes plus
LPIPS on them; the time is logged as ``val/seconds``. ``val/lpips`` is always LPIPS-alex (the evaluate
stage's ``evaluate.lpips_net`` may differ; a curve's meaning must not depend on evaluation settings).
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path

import torch
from torch import nn

from chromapipe.data.shards import LabShardDataset
from chromapipe.metrics.scoring import Predictor, gray_predictor, score_batches
from chromapipe.metrics.suite import MetricSuite
from chromapipe.models.base import Recipe

log = logging.getLogger("chromapipe.train")

VAL_METRICS = ("psnr", "ssim", "lpips", "cf", "delta_cf")
BATCH = 8


class Validator:
    """The fixed validation subset, held on the device, and how to score a generator on it."""

    def __init__(self, data_root: Path, recipe: Recipe, n_images: int, device: torch.device) -> None:
        dataset = LabShardDataset(data_root, "val", limit=n_images)
        self.recipe, self.device = recipe, device
        self.n = len(dataset)
        items = [dataset[i] for i in range(self.n)]
        self.batches = [
            {k: torch.stack([it[k] for it in items[i : i + BATCH]]).to(device) for k in ("L", "ab")}
            for i in range(0, self.n, BATCH)
        ]

    def _score(self, predictor: Predictor) -> dict[str, float]:
        """Scores under a forked random state: building the metric networks draws random initial weights, and
        only rank 0 validates, so without the fork its stream would leave the other workers' (whose per-sample
        draws must follow the same stream) and a run's steps would depend on whether it validated."""
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with (
            torch.random.fork_rng(devices=devices),
            MetricSuite(lpips_net="alex", fid=False, device=self.device) as suite,
        ):
            score_batches(predictor, self.batches, suite, self.device)
            metrics = suite.compute().metrics
        return {k: float(metrics[k]) for k in VAL_METRICS if metrics.get(k) is not None}

    def gray(self) -> dict[str, float]:
        """The gray baseline on the same images: the reference line every model must beat."""
        return self._score(gray_predictor)

    def __call__(self, G: nn.Module) -> dict[str, float]:
        """Score the (unwrapped) generator; training state, mode and RNG are left as they were."""
        t0 = time.time()
        was_training = G.training
        G.eval()
        try:
            scores = self._score(functools.partial(self.recipe.predict, G))
        finally:
            G.train(was_training)
        return scores | {"seconds": time.time() - t0}
