"""Hasler–Süsstrunk colorfulness (CF), the DDColor/CT2 protocol's CF and ΔCF.

CF = sqrt(σ_rg² + σ_yb²) + 0.3·sqrt(μ_rg² + μ_yb²) with rg = R − G, yb = (R + G)/2 − B on 0–255 RGB,
population statistics over each image's pixels (Hasler & Süsstrunk 2003). A gray image scores 0.
"""

from __future__ import annotations

import torch


def colorfulness_per_image(images: torch.Tensor) -> torch.Tensor:
    """(B,) CF of uint8 (B,3,H,W) sRGB images (float64 for stable variances)."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected (B,3,H,W), got {tuple(images.shape)}")
    x = images.to(torch.float64)
    r, g, b = x[:, 0].flatten(1), x[:, 1].flatten(1), x[:, 2].flatten(1)
    rg = r - g
    yb = 0.5 * (r + g) - b
    std = torch.sqrt(rg.var(1, unbiased=False) + yb.var(1, unbiased=False))
    mean = torch.sqrt(rg.mean(1) ** 2 + yb.mean(1) ** 2)
    return std + 0.3 * mean
