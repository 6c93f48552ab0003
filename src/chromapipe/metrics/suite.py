"""The metric suite: PSNR, SSIM, LPIPS, FID (or a named FD proxy) and colorfulness on sRGB uint8 images.

Why one accumulator: the evaluate stage and ``chromapipe score`` feed batches of any size and count and
need the same numbers with the same provenance. Per batch the suite keeps only per-image scalars and
feature sums (see ``frechet.py``), so memory does not grow with the images fed.
Every metric that cannot be computed is ``None`` in ``metrics`` with its reason in ``unavailable``.

Keys: psnr, ssim, lpips, fid, fd_effnetlite0, cf, cf_gt, delta_cf.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from chromapipe.devices import resolve_device
from chromapipe.weights import WeightsUnavailable

from . import frechet
from .colorfulness import colorfulness_per_image
from .pixel import SSIM_RADIUS, SSIM_SIGMA, psnr_per_image, ssim_per_image
from .provenance import missing_package, pkg_version

log = logging.getLogger(__name__)

METRIC_KEYS = ("psnr", "ssim", "lpips", "fid", "fd_effnetlite0", "cf", "cf_gt", "delta_cf")
AVERAGING = "mean over images of per-image values"
PSNR_CAP_DB = 100.0  # an identical pair has infinite PSNR; a mean needs a finite stand-in (stated in details)


@dataclass
class MetricReport:
    """Result of ``MetricSuite.compute()``."""

    metrics: dict[str, float | None]
    unavailable: dict[str, str] = field(default_factory=dict)
    details: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def combined(cls, reports: list[MetricReport]) -> MetricReport:
        """One report of several protocols' reports (their keys are disjoint: ``psnr`` vs ``lab_psnr``)."""
        return cls(
            {k: v for r in reports for k, v in r.metrics.items()},
            {k: v for r in reports for k, v in r.unavailable.items()},
            {k: v for r in reports for k, v in r.details.items()},
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (non-finite floats become None)."""
        clean = {k: (v if v is None or math.isfinite(v) else None) for k, v in self.metrics.items()}
        return {"metrics": clean, "unavailable": dict(self.unavailable), "details": dict(self.details)}


def with_missing_reasons(metrics: dict[str, float | None], unavailable: dict[str, str]) -> dict[str, str]:
    """``unavailable`` plus "no images were fed" for every metric left None without a reason."""
    return {
        **unavailable,
        **{k: "no images were fed" for k, v in metrics.items() if v is None and k not in unavailable},
    }


def _mean(values: list[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


class MetricSuite:
    """Accumulate metrics over ``update(pred, target)`` batches; ``compute()`` returns a ``MetricReport``.

    ``pred`` and ``target`` are uint8 sRGB tensors (B,3,H,W), compared at their own resolution.
    ``fid=False`` skips both FID and the FD proxy (fast runs).
    """

    def __init__(self, *, lpips_net: str = "alex", fid: bool = True, device: str | torch.device = "cpu") -> None:
        self.device = resolve_device(device)
        self.unavailable: dict[str, str] = {}
        self._psnr: list[float] = []
        self._ssim: list[float] = []
        self._lpips: list[float] = []
        self._cf: list[float] = []
        self._cf_gt: list[float] = []
        self._sizes: set[tuple[int, int]] = set()
        self._lpips_model: torch.nn.Module | None = None
        self._lpips_details: dict[str, Any] = {}
        self._effnet: frechet.EffNetLite0Features | None = None
        self._effnet_details: dict[str, Any] = {}
        self._fd_pred: frechet.FeatureStats | None = None
        self._fd_target: frechet.FeatureStats | None = None
        self._fid: frechet.FidAccumulator | None = None
        self._setup_lpips(lpips_net)
        if fid:
            self._setup_fid()
        else:
            self.unavailable["fid"] = self.unavailable["fd_effnetlite0"] = "disabled (MetricSuite(fid=False))"

    # ------------------------------------------------------------------------------------------- setup
    def _setup_lpips(self, net: str) -> None:
        from .lpips_offline import build_lpips

        try:
            self._lpips_model, self._lpips_details = build_lpips(net, self.device)
        except WeightsUnavailable as exc:
            self.unavailable["lpips"] = f"LPIPS-{net} backbone unavailable: {exc.reason}"
            log.warning("LPIPS unavailable: %s", exc)
        except ModuleNotFoundError as exc:
            self.unavailable["lpips"] = f"LPIPS unavailable: {missing_package(exc)}"
            log.warning("LPIPS unavailable: %s", exc)

    def _setup_fid(self) -> None:
        self._fid, why_not = frechet.FidAccumulator.create(self.device)
        if why_not:
            self.unavailable["fid"] = f"{why_not}. See fd_effnetlite0 for an offline Fréchet distance (not FID)"
        try:
            self._effnet, self._effnet_details = frechet.build_effnet(self.device)
            self._fd_pred, self._fd_target = frechet.FeatureStats(1280), frechet.FeatureStats(1280)
        except WeightsUnavailable as exc:
            self.unavailable["fd_effnetlite0"] = f"EfficientNet-Lite0 weights unavailable: {exc.reason}"
        except ModuleNotFoundError as exc:
            self.unavailable["fd_effnetlite0"] = f"EfficientNet-Lite0 network unavailable: {missing_package(exc)}"

    # ------------------------------------------------------------------------------------------- feeding
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch of (B,3,H,W) uint8 predictions and ground truths (same shape)."""
        if pred.shape != target.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
        pred = pred.to(self.device)
        target = target.to(self.device)
        self._psnr += psnr_per_image(pred, target).tolist()
        self._ssim += ssim_per_image(pred, target).tolist()
        self._cf += colorfulness_per_image(pred).tolist()
        self._cf_gt += colorfulness_per_image(target).tolist()
        self._sizes.add((int(pred.shape[-2]), int(pred.shape[-1])))
        if self._lpips_model is not None:
            from .lpips_offline import lpips_per_image

            self._lpips += lpips_per_image(self._lpips_model, pred, target).tolist()
        if self._effnet is not None:
            self._fd_pred.update(self._effnet(pred))
            self._fd_target.update(self._effnet(target))
        if self._fid is not None:
            self._fid.add(pred, target)

    # ------------------------------------------------------------------------------------------- results
    def compute(self) -> MetricReport:
        n = len(self._psnr)
        metrics: dict[str, float | None] = {k: None for k in METRIC_KEYS}
        unavailable = dict(self.unavailable)
        details: dict[str, dict[str, Any]] = {}
        torch_v = torch.__version__
        common = {
            "n_samples": n,
            "averaging": AVERAGING,
            "color_space": "sRGB uint8",
            "resolutions": sorted(f"{h}x{w}" for h, w in self._sizes),
        }

        n_inf = sum(1 for v in self._psnr if not math.isfinite(v))
        details["psnr"] = {
            "implementation": f"chromapipe torch float64 (torch {torch_v}); equals "
            "skimage peak_signal_noise_ratio(data_range=255) per image",
            "data_range": 255,
            "n_identical": n_inf,
            "identical_pairs": f"MSE=0 (skimage: +inf) counted as {PSNR_CAP_DB:g} dB so the mean stays defined",
            **common,
        }
        metrics["psnr"] = _mean([min(v, PSNR_CAP_DB) for v in self._psnr])
        metrics["ssim"] = _mean(self._ssim)
        details["ssim"] = {
            "implementation": f"chromapipe torch float64 (torch {torch_v}); equals skimage "
            "structural_similarity(gaussian_weights=True, sigma=1.5, "
            "use_sample_covariance=False, data_range=255, channel_axis)",
            "window": f"{2 * SSIM_RADIUS + 1}x{2 * SSIM_RADIUS + 1} gaussian sigma {SSIM_SIGMA}",
            "channels": "mean of per-channel SSIM",
            **common,
        }

        if self._lpips_model is not None:
            metrics["lpips"] = _mean(self._lpips)
            details["lpips"] = {**self._lpips_details, **common}

        cf_impl = {"implementation": "Hasler & Süsstrunk 2003 colorfulness on 0-255 RGB (chromapipe, torch)", **common}
        metrics["cf"], metrics["cf_gt"] = _mean(self._cf), _mean(self._cf_gt)
        details["cf"] = {**cf_impl, "of": "predictions"}
        details["cf_gt"] = {**cf_impl, "of": "ground truth"}
        if n:
            metrics["delta_cf"] = abs(metrics["cf"] - metrics["cf_gt"])
        details["delta_cf"] = {**cf_impl, "definition": "|mean CF(pred) - mean CF(gt)|"}

        self._compute_frechet(metrics, unavailable, details, common)
        return MetricReport(metrics=metrics, unavailable=with_missing_reasons(metrics, unavailable), details=details)

    def _compute_frechet(
        self,
        metrics: dict[str, float | None],
        unavailable: dict[str, str],
        details: dict[str, dict[str, Any]],
        common: dict[str, Any],
    ) -> None:
        n = common["n_samples"]
        low = {
            "n_samples": n,
            "low_sample_warning": n < frechet.LOW_SAMPLE_THRESHOLD,
            "low_sample_threshold": frechet.LOW_SAMPLE_THRESHOLD,
            "resolutions": common["resolutions"],
        }
        if self._fd_pred is not None:
            details["fd_effnetlite0"] = {**self._effnet_details, **low}
            if n >= 2:
                mu1, c1 = self._fd_pred.mean_cov()
                mu2, c2 = self._fd_target.mean_cov()
                metrics["fd_effnetlite0"] = frechet.frechet_distance(mu1, c1, mu2, c2)
            elif n:
                unavailable["fd_effnetlite0"] = f"needs at least 2 images, got {n}"
        if self._fid is not None:
            metrics["fid"], why_not, details["fid"] = self._fid.compute()
            if why_not and n:
                unavailable["fid"] = why_not

    def close(self) -> None:
        """Drop the FID running sums (~67 MB); the suite computes no FID afterwards."""
        self._fid = None

    def __enter__(self) -> MetricSuite:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def versions() -> dict[str, str]:
    """Versions of the packages behind the metrics (for protocol blocks)."""
    out = {"torch": torch.__version__}
    for pkg in ("torchvision", "lpips", "torch-fidelity", "scikit-image", "efficientnet-lite-pytorch"):
        out[pkg] = pkg_version(pkg)
    return out
