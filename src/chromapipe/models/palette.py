"""PalGAN's global palette: a 256-bin histogram of a*b* over a 16×16 grid of the ab plane.

PalGAN (Wang et al., ECCV 2022; docs/papers.md#palgan-architecture) predicts a global palette of 256
probabilities (FC(4096, 256) → Sigmoid), which the poster visualises as a 2-D map in the jet colormap; here it
is a 256-bin histogram over a 16×16 grid of the ab plane. The paper does not give the bins
(docs/papers.md#palgan-left-open), so they are fixed here:

- **Bins.** a* and b* each cover ``[-112, 112)`` Lab units, split into 16 bins of width 14
  (:data:`AB_MIN`, :data:`AB_MAX`, :data:`BIN_WIDTH`). Why not ``[-128, 128)`` in width 16: every a*b* that
  an sRGB image can hold lies in a* ∈ [-86.2, 98.2], b* ∈ [-107.9, 94.5], so the wider range spends 3–4 bins
  per axis on colours no training photo has. ``[-112, 112)`` still covers the whole sRGB gamut (the data
  comes from sRGB photos) and buys ~14 % finer bins. Values outside the range (never from sRGB) are clamped
  into the edge bins, so every pixel is counted and histograms always sum to 1.
- **Flat index.** bin ``i_a * 16 + i_b`` with ``i_a = floor((a - AB_MIN) / BIN_WIDTH)`` (same for b), so
  :func:`palette_grid` is a plain reshape: **rows = a* (top row = most green, a* = -112),
  columns = b* (left column = most blue, b* = -112)**. ``evaluation`` saves ``reshape(N, 16, 16)`` of the
  same vectors, which is this orientation.
- **Assignment.** Hard (nearest-bin) counting by default: the ground-truth histogram needs no gradient, and
  a single-colour image then gives a one-hot palette. ``sigma > 0`` optionally blurs the 16×16 grid with a
  Gaussian of that many bins (then renormalises), which spreads mass to neighbouring colours so a palette
  loss does not punish near misses as hard as far ones.

Diverse palettes (:func:`sample_palettes`) are Dirichlet draws around a palette; see there.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from chromapipe.color import rgb_to_lab

GRID = 16  # bins per axis (the paper's 16×16 drawing)
NUM_BINS = GRID * GRID  # 256 (FC(4096, 256) in the palette generator)
AB_MIN = -112.0
AB_MAX = 112.0
BIN_WIDTH = (AB_MAX - AB_MIN) / GRID  # 14 Lab units


def bin_centers() -> torch.Tensor:
    """(16,) the a* (= b*) value at the centre of each bin along one axis, in Lab units."""
    return AB_MIN + BIN_WIDTH * (torch.arange(GRID, dtype=torch.float32) + 0.5)


def bin_index(ab: torch.Tensor) -> torch.Tensor:
    """(B,2,H,W) a*b* in Lab units -> (B,H,W) int64 flat bin index ``i_a * 16 + i_b`` (out-of-range clamped)."""
    idx = torch.floor((ab.float() - AB_MIN) / BIN_WIDTH).long().clamp_(0, GRID - 1)
    return idx[:, 0] * GRID + idx[:, 1]


def _gaussian_blur_grid(grid: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B,16,16) grids, zero padding (mass leaving the gamut box is dropped, then
    the caller renormalises)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=grid.dtype, device=grid.device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    g = grid[:, None]
    g = F.conv2d(g, k.view(1, 1, -1, 1), padding=(radius, 0))
    g = F.conv2d(g, k.view(1, 1, 1, -1), padding=(0, radius))
    return g[:, 0]


def normalize(h: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Rescale non-negative (…, 256) vectors to sum 1 (an all-zero row becomes uniform, never NaN)."""
    h = h.clamp_min(0)
    s = h.sum(dim=-1, keepdim=True)
    return torch.where(s > eps, h / s.clamp_min(eps), torch.full_like(h, 1.0 / h.shape[-1]))


def palette_histogram(ab: torch.Tensor, weights: torch.Tensor | None = None, sigma: float = 0.0) -> torch.Tensor:
    """The ground-truth palette: (B,2,H,W) a*b* in Lab units -> (B,256) float32 histogram summing to 1.

    ``weights`` (B,1,H,W), (B,H,W) or broadcastable: non-negative per-pixel weights (e.g. a mask); a sample
    whose weights are all zero gets the uniform palette. ``sigma``: Gaussian smoothing in bins (0 = hard).
    Not differentiable w.r.t. ``ab`` (it is a target, computed under ``no_grad`` in spirit).
    """
    if ab.dim() != 4 or ab.shape[1] != 2:
        raise ValueError(f"palette_histogram: expected ab of shape (B,2,H,W), got {tuple(ab.shape)}")
    B = ab.shape[0]
    idx = bin_index(ab.detach()).flatten(1)  # (B, HW)
    if weights is None:
        w = torch.ones_like(idx, dtype=torch.float32)
    else:
        w = weights.detach().float()
        if w.dim() == 4:
            w = w[:, 0]
        w = w.expand(B, *ab.shape[-2:]).flatten(1).clamp_min(0)
    h = torch.zeros(B, NUM_BINS, dtype=torch.float32, device=ab.device).scatter_add_(1, idx, w)
    if sigma > 0:
        h = _gaussian_blur_grid(h.view(B, GRID, GRID), sigma).reshape(B, NUM_BINS)
    return normalize(h)


def rgb_palette(rgb01: torch.Tensor, sigma: float = 0.0) -> torch.Tensor:
    """(B,3,H,W) sRGB in [0, 1] -> (B,256) palette of the photo (reference-based colorization)."""
    if rgb01.dim() != 4 or rgb01.shape[1] != 3:
        raise ValueError(f"rgb_palette: expected RGB of shape (B,3,H,W) in [0, 1], got {tuple(rgb01.shape)}")
    return palette_histogram(rgb_to_lab(rgb01.float())[:, 1:], sigma=sigma)


def palette_grid(h: torch.Tensor) -> torch.Tensor:
    """(B,256) -> (B,16,16) for plots: rows = a* bins (top = a* −112, green), columns = b* bins
    (left = b* −112, blue). Bin (r, c) covers a* ∈ [−112 + 14r, −98 + 14r), b* likewise with c."""
    if h.shape[-1] != NUM_BINS:
        raise ValueError(f"palette_grid: expected (..., {NUM_BINS}) palettes, got {tuple(h.shape)}")
    return h.reshape(*h.shape[:-1], GRID, GRID)


def sample_palettes(
    h: torch.Tensor,
    n: int,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
    concentration: float = 64.0,
    floor: float = 1e-3,
) -> torch.Tensor:
    """Draw ``n`` diverse palettes around ``h`` (e.g. the palette generator's prediction ĥ).

    How they are drawn: the palette is first tempered, ``p ∝ (h + floor/256)^(1/temperature)`` (temperature
    > 1 flattens it towards rarer colours, < 1 sharpens it; ``floor`` lets colours absent from ``h`` appear
    at all), then each sample is a Dirichlet draw ``Dir(concentration · 256 · p)``: its mean is ``p`` and
    its spread shrinks as ``concentration`` grows (``concentration · 256`` is the Dirichlet's total
    pseudo-count; 64 gives clearly different, still plausible palettes). The Gamma variates behind the
    Dirichlet are drawn on the CPU in float64 from ``generator`` (torch's Gamma sampler takes no generator,
    so a seed drawn from it seeds a forked RNG): the same generator state gives the same palettes on any
    device.

    ``h``: (256,) or (B,256) -> (n,256) or (n,B,256); every row sums to 1. Row ``k`` of the result is the
    k-th sample (``--samples N`` uses rows 0…N−1).
    """
    if n < 1:
        raise ValueError(f"sample_palettes: n must be >= 1, got {n}")
    if temperature <= 0 or concentration <= 0:
        raise ValueError("sample_palettes: temperature and concentration must be > 0")
    single = h.dim() == 1
    base = h.detach().double().cpu().reshape(-1, NUM_BINS)
    base = normalize(normalize(base) + floor / NUM_BINS)
    base = normalize(base ** (1.0 / temperature))
    alpha = (concentration * NUM_BINS * base).clamp_min(1e-6).expand(n, *base.shape).contiguous()
    seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        g = torch._standard_gamma(alpha)
    out = normalize(g).to(device=h.device, dtype=torch.float32)
    return out[:, 0] if single else out
