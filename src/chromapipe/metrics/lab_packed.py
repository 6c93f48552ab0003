"""The thesis' own metric protocol: PSNR / SSIM / LPIPS-vgg / FID on L*a*b* packed as a 3-channel image.

Source: docs/papers.md#thesis-evaluation-protocol.

Why a second protocol: the thesis (pix2pix + classification) did not score sRGB images. Its training code
(``train.py: _update_metrics``, ``use_lab_colorspace``) concatenated the network's own [-1, 1] tensors
mapped to [0, 1] — ``L/100``, ``(a' + 1)/2``, ``(b' + 1)/2`` with ``a' = a/127`` for a > 0 and ``a/128``
otherwise — and fed that "image" to torchmetrics. Its published numbers (FID 1.5, PSNR 26–28 dB) are in that
space and cannot be compared with an sRGB measurement; this module reproduces the space and the
implementations so they can. Every model is packed the same way from its Lab prediction, so any model can
be scored under this protocol; the keys carry the ``lab_`` prefix and never replace the sRGB ones.

Implementations, as the thesis' notebook configured them:
- ``lab_psnr``: torchmetrics ``PeakSignalNoiseRatio(data_range=1.0)`` — one PSNR from the mean squared
  error over *all* images of the set (not a mean of per-image PSNRs);
- ``lab_ssim``: torchmetrics ``StructuralSimilarityIndexMeasure(data_range=1.0)`` (11×11 Gaussian, σ 1.5),
  mean over images;
- ``lab_lpips_vgg``: LPIPS v0.1 with VGG16 (torchmetrics ``LearnedPerceptualImagePatchSimilarity(net_type=
  'vgg', normalize=True)`` wraps the same lpips network and heads); here built offline by
  :mod:`.lpips_offline`, inputs ``2x − 1``; mean over images;
- ``lab_fid``: torchmetrics ``FrechetInceptionDistance(normalize=True)`` quantises ``(x·255).byte()`` and
  runs torch-fidelity's Inception-v3; here the same quantisation goes through torch-fidelity directly
  (:mod:`.frechet`), so offline weights and the same provenance apply.
"""

from __future__ import annotations

from typing import Any

import torch

from chromapipe.devices import resolve_device
from chromapipe.weights import WeightsUnavailable

from . import frechet
from .lpips_offline import build_lpips, lpips_of_signed_images
from .provenance import missing_package, pkg_version
from .suite import MetricReport, with_missing_reasons

LAB_KEYS = ("lab_psnr", "lab_ssim", "lab_lpips_vgg", "lab_fid")
COLOR_SPACE = (
    "L*a*b* packed as a 3-channel [0, 1] tensor (thesis code): L/100, (a'+1)/2, (b'+1)/2 with "
    "a' = a/127 (a > 0) or a/128 — NOT sRGB"
)


def pack_lab(L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """(B,1,H,W) L* and (B,2,H,W) a*b* in Lab units -> (B,3,H,W) float32 in [0, 1], the thesis' metric input."""
    ab = ab.float().clamp(-128.0, 127.0)
    scaled = torch.where(ab > 0, ab / 127.0, ab / 128.0)
    return torch.cat([(L.float() / 100.0).clamp(0.0, 1.0), (scaled + 1.0) / 2.0], dim=1)


class LabPackedSuite:
    """Accumulate the thesis-protocol metrics over ``update(L, ab_pred, ab_true)`` batches (Lab units).

    ``fid=False`` skips ``lab_fid``. Unavailable metrics are ``None`` with their reason, as in
    :class:`~chromapipe.metrics.suite.MetricSuite`. ``suffix`` names another measurement of the same metrics
    (``_trainmode``: the generator in train mode) and ``generator_mode`` says how its predictions were made:
    both go into every key and detail, so the two are never confused.
    """

    def __init__(
        self,
        *,
        fid: bool = True,
        device: str | torch.device = "cpu",
        suffix: str = "",
        generator_mode: str = "eval",
    ) -> None:
        from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

        self.device = resolve_device(device)
        self.suffix, self.generator_mode = suffix, generator_mode
        self.unavailable: dict[str, str] = {}
        self.n = 0
        self._psnr = PeakSignalNoiseRatio(data_range=1.0).to(self.device)
        self._ssim = StructuralSimilarityIndexMeasure(data_range=1.0).to(self.device)
        self._lpips: list[float] = []
        self._lpips_model: torch.nn.Module | None = None
        self._lpips_details: dict[str, Any] = {}
        self._fid: frechet.FidAccumulator | None = None
        try:
            self._lpips_model, self._lpips_details = build_lpips("vgg", self.device)
        except WeightsUnavailable as exc:
            self.unavailable["lab_lpips_vgg"] = f"LPIPS-vgg backbone unavailable: {exc.reason}"
        except ModuleNotFoundError as exc:
            self.unavailable["lab_lpips_vgg"] = f"LPIPS unavailable: {missing_package(exc)}"
        if fid:
            self._fid, why_not = frechet.FidAccumulator.create(self.device)
            if why_not:
                self.unavailable["lab_fid"] = why_not
        else:
            self.unavailable["lab_fid"] = "disabled (evaluate.fid: false)"

    def update(self, L: torch.Tensor, ab_pred: torch.Tensor, ab_true: torch.Tensor) -> None:
        pred = pack_lab(L, ab_pred).to(self.device)
        target = pack_lab(L, ab_true).to(self.device)
        self._psnr.update(pred, target)
        self._ssim.update(pred, target)
        if self._lpips_model is not None:
            self._lpips += lpips_of_signed_images(self._lpips_model, pred * 2 - 1, target * 2 - 1).tolist()
        if self._fid is not None:
            self._fid.add((pred * 255).to(torch.uint8), (target * 255).to(torch.uint8))  # torchmetrics' .byte()
        self.n += len(pred)

    def compute(self) -> MetricReport:
        metrics: dict[str, float | None] = {k: None for k in LAB_KEYS}
        unavailable = dict(self.unavailable)
        common = {"n_samples": self.n, "color_space": COLOR_SPACE, "protocol": "thesis (Lab packed)"}
        tm = f"torchmetrics {pkg_version('torchmetrics')}"
        details: dict[str, dict[str, Any]] = {
            "lab_psnr": {
                "implementation": f"{tm} PeakSignalNoiseRatio(data_range=1.0)",
                "averaging": "one PSNR from the MSE over all images (torchmetrics dim=None)",
                **common,
            },
            "lab_ssim": {
                "implementation": f"{tm} StructuralSimilarityIndexMeasure(data_range=1.0)",
                "averaging": "mean over images",
                **common,
            },
        }
        if self.n:
            metrics["lab_psnr"] = float(self._psnr.compute())
            metrics["lab_ssim"] = float(self._ssim.compute())
        if self._lpips_model is not None:
            details["lab_lpips_vgg"] = {
                **self._lpips_details,
                "input": "packed tensor scaled to [-1, 1] (torchmetrics LPIPS normalize=True)",
                "averaging": "mean over images",
                **common,
            }
            if self._lpips:
                metrics["lab_lpips_vgg"] = sum(self._lpips) / len(self._lpips)
        if self._fid is not None:
            metrics["lab_fid"], why_not, fid = self._fid.compute()
            details["lab_fid"] = {
                **fid,
                "input": "uint8(255·packed), as torchmetrics FrechetInceptionDistance(normalize=True)",
                "color_space": COLOR_SPACE,
                "protocol": common["protocol"],
            }
            if why_not and self.n:
                unavailable["lab_fid"] = why_not
        for d in details.values():
            d["generator_mode"] = self.generator_mode
        return MetricReport(
            metrics={k + self.suffix: v for k, v in metrics.items()},
            unavailable={k + self.suffix: v for k, v in with_missing_reasons(metrics, unavailable).items()},
            details={k + self.suffix: v for k, v in details.items()},
        )

    def close(self) -> None:
        """Drop the FID running sums (~67 MB); the suite computes no FID afterwards."""
        self._fid = None

    def __enter__(self) -> LabPackedSuite:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
