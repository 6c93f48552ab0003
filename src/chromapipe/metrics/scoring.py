"""The scoring loop shared by the evaluate stage and validation during training: colorize each batch of
L* with a *predictor*, convert prediction and ground truth to sRGB uint8, feed the metric suite.

A predictor is any ``L -> {"ab", optional "palette"}`` callable: a trained model is
``functools.partial(recipe.predict, G)``, and the gray-input baseline is :func:`gray_predictor` — a
predictor like any other, scored by the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from chromapipe.color import join_lab, lab_to_rgb_uint8
from chromapipe.metrics.suite import MetricSuite
from chromapipe.tensors import Prediction

Predictor = Callable[[torch.Tensor], Prediction]


def gray_predictor(L: torch.Tensor) -> Prediction:
    """The gray baseline: a*b* = 0, i.e. the input itself shown as a color image."""
    return {"ab": L.new_zeros(L.shape[0], 2, *L.shape[-2:])}


@dataclass
class ScoredBatch:
    """One batch as scored: inputs on the device, the prediction, and both images as sRGB uint8."""

    L: torch.Tensor
    ab_true: torch.Tensor
    prediction: Prediction
    pred_rgb: torch.Tensor
    target_rgb: torch.Tensor


def score_batches(
    predictor: Predictor,
    batches: Iterable[dict[str, torch.Tensor]],
    suite: MetricSuite,
    device: torch.device,
    on_batch: Callable[[ScoredBatch], None] | None = None,
) -> int:
    """Feed every batch (``{"L", "ab", ...}`` in Lab units) through ``predictor`` into ``suite``; returns
    the number of images. ``on_batch`` sees each scored batch (samples, palettes, the Lab-packed suite)."""
    n = 0
    for batch in batches:
        L, ab_true = batch["L"].to(device), batch["ab"].to(device)
        with torch.no_grad():
            prediction = predictor(L)
        pred_rgb = lab_to_rgb_uint8(join_lab(L, prediction["ab"]))
        target_rgb = lab_to_rgb_uint8(join_lab(L, ab_true))
        suite.update(pred_rgb, target_rgb)
        if on_batch is not None:
            on_batch(ScoredBatch(L, ab_true, prediction, pred_rgb, target_rgb))
        n += len(pred_rgb)
    return n
