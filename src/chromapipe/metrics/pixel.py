"""PSNR and SSIM on sRGB uint8 images, batched in torch, matching scikit-image per image.

Why re-implement instead of calling scikit-image: batches stay on the GPU when there is one. Everything is
float64 so the result agrees with ``skimage.metrics`` (which promotes uint8 to float64) to ~1e-10, well
inside the 1e-4 the tests demand; float32 would cancel badly in E[x²] − E[x]² at the 0–255 scale.
"""

from __future__ import annotations

import math

import torch

DATA_RANGE = 255.0
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # scikit-image's value for gaussian_weights=True
SSIM_RADIUS = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)  # 5 -> 11x11 window, as scipy.ndimage and skimage
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _check(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape or pred.dim() != 4 or pred.shape[1] != 3:
        raise ValueError(
            f"expected two (B,3,H,W) tensors of equal shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if pred.dtype != torch.uint8 or target.dtype != torch.uint8:
        raise TypeError(f"expected uint8 sRGB tensors, got {pred.dtype} and {target.dtype}")


def psnr_per_image(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) PSNR in dB over all pixels and channels of each image; +inf for identical images (as skimage)."""
    _check(pred, target)
    diff = pred.to(torch.float64) - target.to(torch.float64)
    mse = diff.square().flatten(1).mean(1)
    return 10.0 * torch.log10(DATA_RANGE**2 / mse)  # mse == 0 -> inf


def _gaussian_kernel(device: torch.device) -> torch.Tensor:
    x = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=torch.float64, device=device)
    k = torch.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    return k / k.sum()


def _blur_valid(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian, 'valid' region only: exactly skimage's reflect-padded filter after its crop.

    Written as a sum of shifted slices: float64 depthwise ``conv2d`` has no fast CPU kernel (many times
    slower: reports/benchmarks.md, "Evaluate-stage metrics on the GPU"), while these elementwise ops are
    vectorized and scale linearly with the image.
    """
    taps = k.tolist()
    n = len(taps)
    w = x.shape[-1] - n + 1
    h = x.shape[-2] - n + 1
    rows = x[..., 0:w] * taps[0]
    for i in range(1, n):
        rows.add_(x[..., i : i + w], alpha=taps[i])
    out = rows[..., 0:h, :] * taps[0]
    for i in range(1, n):
        out.add_(rows[..., i : i + h, :], alpha=taps[i])
    return out


def ssim_per_image(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) SSIM = mean over channels of the mean SSIM map, skimage's ``structural_similarity(
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=0)``."""
    _check(pred, target)
    size = 2 * SSIM_RADIUS + 1
    if min(pred.shape[-2:]) < size:
        raise ValueError(f"SSIM needs images of at least {size}x{size}, got {tuple(pred.shape[-2:])}")
    x = pred.to(torch.float64)
    y = target.to(torch.float64)
    b, c = x.shape[:2]
    k = _gaussian_kernel(x.device)
    stats = _blur_valid(torch.cat([x, y, x * x, y * y, x * y], dim=1), k)
    ux, uy, uxx, uyy, uxy = stats.split(c, dim=1)
    vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.flatten(2).mean(2).mean(1)


def finite_mean(values: list[float]) -> float:
    return math.fsum(values) / len(values) if values else float("nan")
