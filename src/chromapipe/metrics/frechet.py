"""Fréchet distances: torch-fidelity's FID when its Inception weights resolve locally, and a clearly named
Fréchet distance on EfficientNet-Lite0 features (``fd_effnetlite0``) that always works offline.

Memory stays bounded for any number of images:
- FD-EffNet keeps only running sums (n, Σf, Σffᵀ in float64: 1280 + 1280² numbers per side, ~13 MB).
- FID goes through ``torch_fidelity.calculate_metrics`` (the reference implementation, not re-derived
  here), which needs its inputs as Datasets. Images are therefore spilled to lossless PNGs in a temporary
  directory (disk, not RAM; removed by ``close()``) and read back by a Dataset returning uint8 3×H×W.

The ground truth is the same for every model scored on a set, so its Inception statistics are computed once
per process: torch-fidelity's own cache (``input2_cache_name``) keeps them in a process-private directory
under a name derived from the SHA-256 of the ground-truth pixels (plus weights and device), so a cached
entry can only be reused for exactly the same images and the FID value does not change.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.util
import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from chromapipe.weights.effnet import PREPROCESSING, efficientnet_lite0, lite0_input

from .provenance import missing_package, pkg_version

LOW_SAMPLE_THRESHOLD = 2048  # below this a 2048-d covariance is rank-deficient: FID/FD values are unstable


# ---------------------------------------------------------------------------------------------- math
class FeatureStats:
    """Running mean/covariance of feature vectors from sums (float64), so features need not be kept."""

    def __init__(self, dim: int) -> None:
        self.n = 0
        self.sum = np.zeros(dim, np.float64)
        self.outer = np.zeros((dim, dim), np.float64)

    def update(self, feats: torch.Tensor) -> None:
        f = feats.detach().to("cpu", torch.float64).numpy()
        self.n += f.shape[0]
        self.sum += f.sum(0)
        self.outer += f.T @ f

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and unbiased (n − 1) covariance, as torch-fidelity/pytorch-fid (``np.cov(rowvar=False)``)."""
        if self.n < 2:
            raise ValueError("a covariance needs at least 2 samples")
        mu = self.sum / self.n
        cov = (self.outer - self.n * np.outer(mu, mu)) / (self.n - 1)
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
        self.net = net.to(memory_format=torch.channels_last)  # ~30% faster depthwise convs on CPU

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = lite0_input(images).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            feat = self.net.extract_features(x)
            return F.adaptive_avg_pool2d(feat, 1).flatten(1)


def build_effnet(device: torch.device) -> tuple[EffNetLite0Features, dict[str, Any]]:
    net, prov = efficientnet_lite0()
    model = EffNetLite0Features(net).to(device)
    details = {
        "implementation": "chromapipe Fréchet distance on EfficientNet-Lite0 penultimate features "
                          f"(efficientnet_lite_pytorch {pkg_version('efficientnet-lite-pytorch')}); "
                          "NOT FID, not comparable with FID values",
        "features": "1280-d global average pool before the classifier",
        "input": PREPROCESSING,
        "covariance": "unbiased (n-1), from float64 running sums",
        "weights": prov["path"], "sha256": prov["sha256"], "weights_source": prov["source"],
    }
    return model, details


# ---------------------------------------------------------------------------------------------- FID
class _PngDataset(torch.utils.data.Dataset):
    """The spilled images, decoded back to uint8 3×H×W as torch-fidelity expects."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        from torchvision.io import ImageReadMode, decode_png, read_file

        return decode_png(read_file(str(self.files[i])), mode=ImageReadMode.RGB)


class ImageSpill:
    """Lossless on-disk store of (pred, target) images for torch-fidelity; deleted on ``close()``/GC.

    It also hashes the targets as they come (order, shape and pixels): the identity of the ground-truth set
    under which its FID statistics are cached."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="chromapipe-fid-"))
        self.pred: list[Path] = []
        self.target: list[Path] = []
        self.sizes: set[tuple[int, int]] = set()
        self._target_hash = hashlib.sha256()
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.root, True)

    def add(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        from torchvision.io import encode_png

        for p, t in zip(pred.cpu(), target.cpu()):
            i = len(self.pred)
            for img, lst, tag in ((p, self.pred, "pred"), (t, self.target, "target")):
                path = self.root / f"{tag}-{i:07d}.png"
                path.write_bytes(encode_png(img.contiguous(), compression_level=1).numpy().tobytes())
                lst.append(path)
            self._target_hash.update(f"{tuple(t.shape)}|".encode())
            self._target_hash.update(t.contiguous().numpy().tobytes())
            self.sizes.add((int(p.shape[-2]), int(p.shape[-1])))

    def target_digest(self) -> str:
        """SHA-256 of every target fed so far, in order (shapes and uint8 pixels)."""
        return self._target_hash.hexdigest()

    def close(self) -> None:
        self._finalizer()


_GT_CACHE_ROOT: Path | None = None
_GT_CACHED: set[str] = set()  # ground-truth cache names whose statistics this process has computed


def ground_truth_cache_root() -> Path:
    """The process-private directory of torch-fidelity's cached ground-truth statistics (removed at exit):
    private so that no other process's (or torch-fidelity version's) entry can ever be picked up."""
    global _GT_CACHE_ROOT
    if _GT_CACHE_ROOT is None:
        _GT_CACHE_ROOT = Path(tempfile.mkdtemp(prefix="chromapipe-fid-gt-"))
        atexit.register(shutil.rmtree, _GT_CACHE_ROOT, True)
    return _GT_CACHE_ROOT


def ground_truth_cache_name(spill: ImageSpill, weights_sha256: str, cuda: bool) -> str:
    """torch-fidelity cache name of the spill's ground truth: what its statistics depend on — the exact
    target pixels, the Inception weights and the device the features are computed on."""
    key = hashlib.sha256(f"{spill.target_digest()}|{weights_sha256}|cuda={cuda}".encode()).hexdigest()
    return f"chromapipe-gt-{key[:32]}"


def torch_fidelity_fid(spill: ImageSpill, weights_path: Path, cuda: bool, gt_cache_name: str | None = None) -> float:
    """FID of predictions vs targets through ``torch_fidelity.calculate_metrics`` (Inception pool3, 2048-d).

    With ``gt_cache_name`` torch-fidelity caches the targets' statistics under that name in
    :func:`ground_truth_cache_root` and, when they are there already, never reads the targets again."""
    import torch_fidelity

    batch = 64 if len(spill.sizes) == 1 else 1  # mixed sizes cannot be stacked into one batch
    few_cpus = (os.cpu_count() or 1) <= 4  # torch-fidelity would start 4 loader workers: too many here
    cache = {"cache": True, "cache_root": str(ground_truth_cache_root()), "input2_cache_name": gt_cache_name} \
        if gt_cache_name else {"cache": False}
    out = torch_fidelity.calculate_metrics(
        input1=_PngDataset(spill.pred), input2=_PngDataset(spill.target), cuda=cuda, fid=True,
        feature_extractor_weights_path=str(weights_path), verbose=False, batch_size=batch,
        samples_shuffle=False, save_cpu_ram=few_cpus or not cuda, **cache)
    return float(out["frechet_inception_distance"])


class FidAccumulator:
    """FID of the (pred, target) uint8 pairs fed to :meth:`add`: the image spill plus the Inception weights,
    shared by the sRGB suite and the thesis' Lab-packed one. Build it with :meth:`create`, which says why
    there is none when the weights are not on this machine."""

    def __init__(self, weights_path: Path, weights_prov: dict[str, str]) -> None:
        self.weights_path, self.weights_prov = weights_path, weights_prov
        self.spill = ImageSpill()

    @classmethod
    def create(cls) -> tuple[FidAccumulator | None, str | None]:
        """(accumulator, None), or (None, the reason FID cannot be computed here)."""
        from chromapipe.weights import WeightsUnavailable
        from chromapipe.weights.resolver import inception_weights_path

        if importlib.util.find_spec("torch_fidelity") is None:  # checked now, not after every image is fed
            return None, missing_package("torch_fidelity")
        try:
            path, prov = inception_weights_path()
        except WeightsUnavailable as exc:
            return None, f"Inception weights pt_inception-2015-12-05 not available: {exc.reason}"
        return cls(path, prov), None

    def add(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        self.spill.add(pred, target)

    def compute(self, cuda: bool) -> tuple[float | None, str | None, dict[str, Any]]:
        """(FID or None, why not, details with the sample count and the small-sample warning)."""
        n = len(self.spill.pred)
        details = {**fid_details(self.weights_prov), "n_samples": n, "low_sample_warning": n < LOW_SAMPLE_THRESHOLD,
                   "low_sample_threshold": LOW_SAMPLE_THRESHOLD, "resolutions": sorted(f"{h}x{w}" for h, w in self.spill.sizes)}
        if n < 2:
            return None, (f"needs at least 2 images, got {n}" if n else "no images were fed"), details
        name = ground_truth_cache_name(self.spill, self.weights_prov["sha256"], cuda)
        details["ground_truth_statistics"] = ("cached: computed earlier in this process for the same ground-truth "
                                              "pixels" if name in _GT_CACHED else "computed (then cached for "
                                              "later models on the same ground truth)")
        fid = torch_fidelity_fid(self.spill, self.weights_path, cuda=cuda, gt_cache_name=name)
        _GT_CACHED.add(name)
        return fid, None, details

    def close(self) -> None:
        self.spill.close()


def fid_details(weights_prov: dict[str, str]) -> dict[str, Any]:
    return {
        "implementation": f"torch-fidelity {pkg_version('torch-fidelity')} calculate_metrics "
                          "(inception-v3-compat, 2048-d pool3)",
        "weights": weights_prov["path"], "sha256": weights_prov["sha256"],
        "weights_source": weights_prov["source"],
        "storage": "images spilled as lossless PNG to a temporary directory, read back as uint8 Datasets",
    }
