"""Fréchet distances: torch-fidelity's FID when its Inception weights resolve locally, and a clearly named
Fréchet distance on EfficientNet-Lite0 features (``fd_effnetlite0``) that always works offline.

Both are computed in-process, batch by batch, on the suite's device, and keep only running sums
(n, Σf, Σffᵀ in float64 per side: ~13 MB for 1280-d features, ~67 MB for 2048-d), so memory does not grow
with the images fed and nothing is written to disk.

FID uses torch-fidelity's own pieces rather than a re-derivation: its ``FeatureExtractorInceptionV3``
(``inception-v3-compat``, 2048-d pool3, which resizes uint8 input to 299² itself), built once per process
and device with the resolved weights, and its ``fid_statistics_to_metric`` for the distance. Only the
mean and covariance come from the running sums instead of ``np.mean``/``np.cov`` over all stored features
(the same quantities; tested against ``torch_fidelity.calculate_metrics`` on the same images). Why not
``calculate_metrics`` itself: it wants Datasets, so every image had to be spilled to a PNG file and read
back (slower than all the evaluate stage's other metrics together: reports/benchmarks.md, "Evaluate-stage
metrics on the GPU"), and it rebuilt the Inception network for every model and set.
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from chromapipe.weights.effnet import PREPROCESSING, efficientnet_lite0, lite0_input

from .provenance import missing_package, pkg_version

LOW_SAMPLE_THRESHOLD = 2048  # below this a 2048-d covariance is rank-deficient: FID/FD values are unstable


# ---------------------------------------------------------------------------------------------- math
class FeatureStats:
    """Running mean/covariance of feature vectors from sums (float64), so features need not be kept.

    The sums live on the features' device: a GPU run adds each batch's Σf and Σffᵀ there (a float64 matrix
    product) instead of copying the features to the host every batch, and reads the sums back once, in
    :meth:`mean_cov`."""

    def __init__(self, dim: int) -> None:
        self.n = 0
        self.dim = dim
        self.sum: torch.Tensor | None = None
        self.outer: torch.Tensor | None = None

    def update(self, feats: torch.Tensor) -> None:
        f = feats.detach().to(torch.float64)
        if self.sum is None:
            self.sum = torch.zeros(self.dim, dtype=torch.float64, device=f.device)
            self.outer = torch.zeros(self.dim, self.dim, dtype=torch.float64, device=f.device)
        self.n += f.shape[0]
        self.sum += f.sum(0)
        self.outer.addmm_(f.T, f)

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and unbiased (n − 1) covariance, as torch-fidelity/pytorch-fid (``np.cov(rowvar=False)``)."""
        if self.n < 2:
            raise ValueError("a covariance needs at least 2 samples")
        mu = self.sum.cpu().numpy() / self.n
        cov = (self.outer.cpu().numpy() - self.n * np.outer(mu, mu)) / (self.n - 1)
        return mu, (cov + cov.T) / 2


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(m)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2(Σ1Σ2)^½), with Tr((Σ1Σ2)^½) = Σ√λ(Σ1^½ Σ2 Σ1^½) (symmetric: stable)."""
    s1 = _sqrt_psd(cov1)
    eig = np.linalg.eigvalsh(s1 @ cov2 @ s1)
    tr_covmean = float(np.sqrt(np.clip(eig, 0, None)).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * tr_covmean)


# ---------------------------------------------------------------------------------------------- EffNet-Lite0
class EffNetLite0Features(torch.nn.Module):
    """Penultimate (global-average-pooled, 1280-d) features of the ImageNet EfficientNet-Lite0 classifier
    (the network of :mod:`chromapipe.weights.effnet`, shared with the training teacher). Input: uint8 RGB."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        # faster depthwise convs on CPU (reports/benchmarks.md, "Evaluate-stage metrics on the GPU")
        self.net = net.to(memory_format=torch.channels_last)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = lite0_input(images).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            feat = self.net.extract_features(x)
            return F.adaptive_avg_pool2d(feat, 1).flatten(1)


@functools.lru_cache(maxsize=4)
def build_effnet(device: torch.device) -> tuple[EffNetLite0Features, dict[str, Any]]:
    """The FD network and its provenance, built once per process and device (it holds no state between
    batches): the evaluate stage scores every model and set in one process."""
    net, prov = efficientnet_lite0()
    model = EffNetLite0Features(net).to(device)
    details = {
        "implementation": "chromapipe Fréchet distance on EfficientNet-Lite0 penultimate features "
        f"(efficientnet_lite_pytorch {pkg_version('efficientnet-lite-pytorch')}); "
        "NOT FID, not comparable with FID values",
        "features": "1280-d global average pool before the classifier",
        "input": PREPROCESSING,
        "covariance": "unbiased (n-1), from float64 running sums",
        "weights": prov["path"],
        "sha256": prov["sha256"],
        "weights_source": prov["source"],
    }
    return model, details


# ---------------------------------------------------------------------------------------------- FID
FID_DIM = 2048  # Inception pool3


@functools.lru_cache(maxsize=4)
def _inception(weights_path: str, device: torch.device) -> torch.nn.Module:
    """torch-fidelity's FID network with ``weights_path`` on ``device``, set up as its
    ``create_feature_extractor`` does (eval mode, no gradients); built once per process and device."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    net = FeatureExtractorInceptionV3(
        "inception-v3-compat", [str(FID_DIM)], feature_extractor_weights_path=weights_path
    )
    net.requires_grad_(False)
    return net.eval().to(device)


class FidAccumulator:
    """FID of the (pred, target) uint8 pairs fed to :meth:`add`, shared by the sRGB suite and the thesis'
    Lab-packed one. Build it with :meth:`create`, which says why there is none when torch-fidelity or the
    Inception weights are not on this machine."""

    def __init__(self, net: torch.nn.Module, weights_prov: dict[str, str], device: torch.device) -> None:
        self.net, self.weights_prov, self.device = net, weights_prov, device
        self.pred, self.target = FeatureStats(FID_DIM), FeatureStats(FID_DIM)
        self.sizes: set[tuple[int, int]] = set()

    @classmethod
    def create(cls, device: torch.device | str = "cpu") -> tuple[FidAccumulator | None, str | None]:
        """(accumulator, None), or (None, the reason FID cannot be computed here)."""
        from chromapipe.weights import WeightsUnavailable
        from chromapipe.weights.resolver import inception_weights_path

        if importlib.util.find_spec("torch_fidelity") is None:  # checked now, not after every image is fed
            return None, missing_package("torch_fidelity")
        try:
            path, prov = inception_weights_path()
        except WeightsUnavailable as exc:
            return None, f"Inception weights pt_inception-2015-12-05 not available: {exc.reason}"
        device = torch.device(device)
        return cls(_inception(str(path), device), prov, device), None

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 2048) pool3 features of (B, 3, H, W) uint8 images (torch-fidelity resizes them to 299²)."""
        return self.net(images.to(self.device))[0]

    def add(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        self.pred.update(self.features(pred))
        self.target.update(self.features(target))
        self.sizes.add((int(pred.shape[-2]), int(pred.shape[-1])))

    def compute(self) -> tuple[float | None, str | None, dict[str, Any]]:
        """(FID or None, why not, details with the sample count and the small-sample warning)."""
        from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

        n = self.pred.n
        details = {
            **fid_details(self.weights_prov, self.device),
            "n_samples": n,
            "low_sample_warning": n < LOW_SAMPLE_THRESHOLD,
            "low_sample_threshold": LOW_SAMPLE_THRESHOLD,
            "resolutions": sorted(f"{h}x{w}" for h, w in self.sizes),
        }
        if n < 2:
            return None, (f"needs at least 2 images, got {n}" if n else "no images were fed"), details
        (mu1, sigma1), (mu2, sigma2) = self.pred.mean_cov(), self.target.mean_cov()
        out = fid_statistics_to_metric({"mu": mu1, "sigma": sigma1}, {"mu": mu2, "sigma": sigma2}, verbose=False)
        return float(out[KEY_METRIC_FID]), None, details


def fid_details(weights_prov: dict[str, str], device: torch.device) -> dict[str, Any]:
    return {
        "implementation": f"torch-fidelity {pkg_version('torch-fidelity')}: FeatureExtractorInceptionV3 "
        "(inception-v3-compat, 2048-d pool3) and fid_statistics_to_metric, run in-process",
        "weights": weights_prov["path"],
        "sha256": weights_prov["sha256"],
        "weights_source": weights_prov["source"],
        "statistics": "mean and unbiased (n-1) covariance from float64 running sums (= np.mean / np.cov)",
        "device": str(device),
    }
