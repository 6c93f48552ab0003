"""sRGB <-> CIE L*a*b* (D65, 2° observer) on torch tensors, batched and differentiable.

The formulas and constants are scikit-image's (``skimage.color.rgb2lab`` / ``lab2rgb``), so numbers
agree with the reference implementation the tests compare against; running them in torch keeps the
conversion on the GPU during evaluation and inference instead of a per-image NumPy round trip.
Tensors are (..., 3, H, W): RGB in [0, 1]; L in [0, 100], a and b roughly [-128, 127].
"""

from __future__ import annotations

import functools

import torch

#: linear sRGB -> CIE XYZ and back, and the D65 white point (scikit-image's constants): public because the
#: full-resolution renderer (``inference.fullres``) fuses the same conversion into its own strip kernels
RGB_TO_XYZ = torch.tensor(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]],
    dtype=torch.float64,
)
XYZ_TO_RGB = torch.linalg.inv(RGB_TO_XYZ)
WHITE_D65 = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)


def _matmul_channels(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,...jhw->...ihw", m.to(x.dtype).to(x.device), x)


def _white(x: torch.Tensor) -> torch.Tensor:
    return WHITE_D65.to(x.dtype).to(x.device).view(3, 1, 1)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] -> L*a*b*. Float32 keeps |ΔLab| below 1e-3 against skimage's float64."""
    rgb = rgb.clamp(0.0, 1.0)
    lin = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = _matmul_channels(RGB_TO_XYZ, lin) / _white(lin)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(1e-12) ** (1.0 / 3.0), 7.787 * xyz + 16.0 / 116.0)
    fx, fy, fz = f.unbind(-3)
    L = 116.0 * fy - 16.0
    a = 500.0 * (fx - fy)
    b = 200.0 * (fy - fz)
    return torch.stack([L, a, b], dim=-3)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """L*a*b* -> sRGB in [0, 1] (out-of-gamut colors clipped, as skimage does)."""
    L, a, b = lab.unbind(-3)
    fy = (L + 16.0) / 116.0
    fx = a / 500.0 + fy
    fz = (fy - b / 200.0).clamp_min(0.0)
    f = torch.stack([fx, fy, fz], dim=-3)
    xyz = torch.where(f > 0.2068966, f**3, (f - 16.0 / 116.0) / 7.787) * _white(f)
    lin = _matmul_channels(XYZ_TO_RGB, xyz)
    rgb = torch.where(lin > 0.0031308, 1.055 * lin.clamp_min(1e-12) ** (1.0 / 2.4) - 0.055, 12.92 * lin)
    return rgb.clamp(0.0, 1.0)


def lab_to_rgb_uint8(lab: torch.Tensor) -> torch.Tensor:
    """L*a*b* -> sRGB uint8 (round to nearest), the form every metric is computed on."""
    return (lab_to_rgb(lab.float()) * 255.0 + 0.5).floor().clamp(0, 255).to(torch.uint8)


def rgb_uint8_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    return rgb_to_lab(rgb.float() / 255.0)


def join_lab(L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """Concatenate L (…,1,H,W) and ab (…,2,H,W)."""
    return torch.cat([L, ab], dim=-3)


# --- uint8 fast path (data preparation) -------------------------------------------------------------
# The prepare stage converts millions of 8-bit crops; there the per-pixel power functions of
# rgb_to_lab dominate. An 8-bit channel has only 256 values, so sRGB -> linear is a table lookup (the
# table is computed in float64: no less exact than the float32 formula); the white point is folded into
# the matrix; and the CIE f() uses a branch-free form. Results agree with rgb_uint8_to_lab to 3e-4.

_EPSILON = 0.008856  # CIE f(): cube root above, the tangent line 7.787 t + 16/116 below


@functools.cache
def srgb_uint8_linear_lut() -> torch.Tensor:
    """(256,) float32: sRGB code value -> linear RGB."""
    v = torch.arange(256, dtype=torch.float64) / 255.0
    return torch.where(v > 0.04045, ((v + 0.055) / 1.055) ** 2.4, v / 12.92).float()


_RGB_TO_XYZ_WHITE = (RGB_TO_XYZ / WHITE_D65[:, None]).float()  # XYZ already divided by the white point


@functools.cache
def _fast_path_constants(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The lookup table and matrix on ``device``, copied there once per process (training decodes shards
    on the GPU batch by batch)."""
    return srgb_uint8_linear_lut().to(device), _RGB_TO_XYZ_WHITE.to(device)


def _cie_f_(t: torch.Tensor) -> torch.Tensor:
    """CIE f(t) in place, without a per-element branch: cbrt(max(t, eps)) + 7.787 * min(t - eps, 0).

    The line 7.787 t + 16/116 is tangent to t^(1/3) at eps (that is how CIE chose its constants), so
    below eps the second term turns cbrt(eps) into exactly that line (to 1e-6). exp(log(t)/3) is the
    fastest vectorised cube root in torch on CPU, faster than torch.pow with 1/3 (reports/benchmarks.md,
    section "Prepare: source photos → shards").
    """
    low = torch.sub(t, _EPSILON).clamp_max_(0.0)
    return t.clamp_min_(_EPSILON).log_().mul_(1.0 / 3.0).exp_().add_(low, alpha=7.787)


def rgb_uint8_to_lab_fast(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB uint8 (..., 3, H, W) -> L*a*b* float32, via a 256-entry lookup table (see above)."""
    if rgb.dtype != torch.uint8:
        raise TypeError(f"expected uint8 sRGB, got {rgb.dtype}")
    lead, (h, w) = rgb.shape[:-3], rgb.shape[-2:]
    planes = rgb.movedim(-3, 0).reshape(-1)  # channel-major; a view for a single contiguous (3, H, W) image
    lut, rgb_to_xyz = _fast_path_constants(rgb.device)
    lin = lut.index_select(0, planes.int()).view(3, -1)
    fx, fy, fz = _cie_f_(torch.mm(rgb_to_xyz, lin))
    lab = torch.empty_like(lin)
    torch.mul(fy, 116.0, out=lab[0]).sub_(16.0)
    torch.sub(fx, fy, out=lab[1]).mul_(500.0)
    torch.sub(fy, fz, out=lab[2]).mul_(200.0)
    return lab.view(3, *lead, h, w).movedim(0, -3)
