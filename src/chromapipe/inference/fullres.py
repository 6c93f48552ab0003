"""Full-resolution Lab assembly: L* from the original pixels, a*b* from the network, done in row strips.

Why strips: a 6000x4000 photo is 24 MP; one float32 plane is 96 MB and the Lab -> sRGB formulas need
several 3-channel temporaries, so converting the whole frame at once would cost well over 1 GB. Working
on strips of a few hundred rows keeps every temporary at a few MB while the only full-size arrays are the
decoded input pixels and the encoded output pixels (both integer).

Why a luminance-preserving gamut mapping instead of clipping: the network predicts a*b* freely, and a
(L*, a*, b*) triple is often outside sRGB. Clipping each RGB channel changes luminance (dark saturated
blues get lighter, bright yellows darker), i.e. it alters the photographer's tones. Instead each pixel is
desaturated towards the gray of the same luminance Y in linear RGB, exactly as far as needed to fit; Y is
a linear function of linear RGB, so L* survives up to the final integer rounding.

Formulas and constants are those of :mod:`chromapipe.color` (scikit-image's), so L* here equals
``rgb_to_lab(...)[0]`` of the same pixels.

Two paths, one set of formulas. The host path (NumPy look-ups, small strips in a thread pool) reads a
NumPy array. The device path reads :class:`DevicePixels` — integer pixels already on an accelerator
(uploaded once, or decoded there by nvJPEG) — and runs the same maths with torch ops on that device in
strips of :data:`DEVICE_STRIP_PIXELS`, then downloads only the encoded result. :func:`network_L` and
:func:`render` pick the path from the type of the pixels they are given; :func:`lab_to_encoded` and
:class:`ChromaUpsampler` are the very same code on both. Why: on a CUDA colorize run the host path kept
the GPU idle for most of each photo, and the device path does the same work in a small fraction of that
time, the download of the result included (reports/benchmarks.md, "`chromapipe colorize --device cuda` at
6 MP").
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from chromapipe.color import RGB_TO_XYZ, WHITE_D65, XYZ_TO_RGB

#: pixels per strip: small enough that a strip's ~20 float planes stay in the CPU cache (faster than 1.5 MP
#: strips: reports/benchmarks.md, "Inference: `chromapipe colorize` on CPU"), large enough that per-op
#: overhead does not matter
STRIP_PIXELS = 65_536

#: pixels per strip on the device path: large enough that the per-strip cost of launching ~60 small
#: kernels from Python is amortised (larger strips stop paying beyond this size), small enough that a strip's
#: float temporaries stay bounded: peak device memory grows with the strip, not the photo, on top of the
#: image's own integer pixels (timings per strip size and the peak: reports/benchmarks.md, "`chromapipe
#: colorize --device cuda` at 6 MP")
DEVICE_STRIP_PIXELS = 1 << 22

_LUMA = RGB_TO_XYZ[1].numpy().astype(np.float32)  # Y row: sums to 1, so gray (v, v, v) has Y = v
_Y_EPSILON, _KAPPA, _F_OFFSET = 0.008856, 7.787, 16.0 / 116.0  # CIE f(): cube root above, line below


def _srgb_to_linear(v: np.ndarray) -> np.ndarray:
    return np.where(v > 0.04045, ((v + 0.055) / 1.055) ** 2.4, v / 12.92)


def _y_to_L(y: np.ndarray) -> np.ndarray:
    f = np.where(y > _Y_EPSILON, np.cbrt(np.maximum(y, 1e-12)), _KAPPA * y + _F_OFFSET)
    return 116.0 * f - 16.0


def _y_to_L_torch(y: torch.Tensor) -> torch.Tensor:
    """:func:`_y_to_L` in torch (any device). torch has no ``cbrt``: the cube root is taken in float64
    and rounded once to float32, which is the correctly rounded float32 cube root; NumPy's float32
    ``np.cbrt`` is within one ulp of it (it differs on ~11 % of inputs), hence the device path's rare
    one-code differences from the host path (see ``tests/test_colorize_gpu_path.py``)."""
    cbrt = y.clamp_min(1e-12).double().pow_(1.0 / 3.0).float()
    f = torch.where(y > _Y_EPSILON, cbrt, y * _KAPPA + _F_OFFSET)
    return f.mul_(116.0).sub_(16.0)


@functools.lru_cache(maxsize=4)
def linear_lut(max_value: int) -> np.ndarray:
    """Code value -> linear RGB (float32), one entry per code (256 or 65536): decoding by table lookup
    avoids a float copy of the whole image and the per-pixel power function."""
    return _srgb_to_linear(np.arange(max_value + 1, dtype=np.float64) / max_value).astype(np.float32)


@functools.lru_cache(maxsize=4)
def gray_L_lut(max_value: int) -> np.ndarray:
    """Gray code value -> L* (float32): for gray images L* is a pure function of the code value."""
    lin = _srgb_to_linear(np.arange(max_value + 1, dtype=np.float64) / max_value)
    return _y_to_L(lin).astype(np.float32)


def max_value_of(pixels: np.ndarray) -> int:
    return 65535 if pixels.dtype == np.uint16 else 255


def luminance_rows(pixels: np.ndarray, y0: int, y1: int) -> torch.Tensor:
    """L* (float32, (y1-y0, W)) of rows ``y0:y1`` of a gray (H, W) or RGB (H, W, 3) uint8/uint16 image."""
    rows = pixels[y0:y1]
    maxv = max_value_of(pixels)
    if rows.ndim == 2:
        return torch.from_numpy(np.take(gray_L_lut(maxv), rows))
    lut = linear_lut(maxv)
    y = np.take(lut, rows[..., 0]) * _LUMA[0]
    y += np.take(lut, rows[..., 1]) * _LUMA[1]
    y += np.take(lut, rows[..., 2]) * _LUMA[2]
    return torch.from_numpy(_y_to_L(y).astype(np.float32, copy=False))


def luminance(pixels: np.ndarray, strip_rows: int | None = None) -> torch.Tensor:
    """L* of the whole image, (H, W) float32, computed strip by strip (no float copy of the RGB)."""
    H, W = pixels.shape[:2]
    strip_rows = strip_rows or max(1, STRIP_PIXELS // W)
    out = torch.empty((H, W), dtype=torch.float32)
    for y0 in range(0, H, strip_rows):
        y1 = min(H, y0 + strip_rows)
        out[y0:y1] = luminance_rows(pixels, y0, y1)
    return out


# -- the device path ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DevicePixels:
    """Decoded integer pixels held as a torch tensor on a device (the GPU colorize path): what
    :func:`network_L` and :func:`render` take instead of a NumPy array, so the per-pixel work runs where
    the pixels are and the only host transfer is the encoded result.

    ``data``: (H, W) gray or (H, W, 3) RGB, contiguous; uint8, or int16 holding the bit patterns of uint16
    codes — torch's own uint16 supports almost no operations on the torch versions we run (no indexing,
    no arithmetic on CUDA), while int16 carries the same bytes and is widened with ``& 0xFFFF`` on the
    device. ``dtype`` is the host dtype these pixels stand for (uint8 or uint16); with ``shape`` and
    ``nbytes`` it mirrors the NumPy array's, so code that only sizes or classifies an image
    (``DecodedImage.size``/``nbytes``, ``io.wants_padding``, :func:`max_value_of`) takes either."""

    data: torch.Tensor
    dtype: np.dtype

    @classmethod
    def upload(cls, arr: np.ndarray, device: torch.device | str) -> DevicePixels:
        """Copy a host uint8/uint16 array to ``device`` (one transfer of the integer pixels)."""
        if arr.dtype not in (np.uint8, np.uint16):
            raise TypeError(f"expected uint8 or uint16 pixels, got {arr.dtype}")
        bits = np.ascontiguousarray(arr).view(np.int16) if arr.dtype == np.uint16 else np.ascontiguousarray(arr)
        return cls(torch.from_numpy(bits).to(device), arr.dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def nbytes(self) -> int:
        return self.data.numel() * self.data.element_size()

    @property
    def device(self) -> torch.device:
        return self.data.device

    def codes(self, y0: int, y1: int) -> torch.Tensor:
        """Rows ``y0:y1`` as int32 code values (0..255 or 0..65535): look-up-table indices."""
        rows = self.data[y0:y1].to(torch.int32)
        return rows.bitwise_and_(0xFFFF) if self.dtype == np.uint16 else rows

    def numpy(self) -> np.ndarray:
        """The pixels back on the host, in their own dtype."""
        arr = self.data.cpu().numpy()
        return arr.view(np.uint16) if self.dtype == np.uint16 else arr


def _storage_code(value: int, dtype: np.dtype) -> int:
    """An integer code as the value :class:`DevicePixels` stores for it (uint16 65535 is int16 -1)."""
    return int(np.array(value, dtype=dtype).view(np.int16)) if dtype == np.uint16 else value


@functools.lru_cache(maxsize=8)
def _device_lut(kind: str, max_value: int, device: torch.device) -> torch.Tensor:
    """The host path's look-up table (``"linear"``: :func:`linear_lut`, ``"gray_L"``: :func:`gray_L_lut`)
    copied once to ``device``: the same float32 entries, so look-ups agree exactly with the host path."""
    table = linear_lut(max_value) if kind == "linear" else gray_L_lut(max_value)
    return torch.from_numpy(table).to(device)


def device_luminance_rows(pixels: DevicePixels, y0: int, y1: int) -> torch.Tensor:
    """:func:`luminance_rows` on the pixels' device: the same tables and the same float32 operations in
    the same order (only the cube root differs, see :func:`_y_to_L_torch`)."""
    codes = pixels.codes(y0, y1)
    maxv = max_value_of(pixels)
    if codes.ndim == 2:
        return _device_lut("gray_L", maxv, pixels.device).index_select(0, codes.view(-1)).view(codes.shape)
    lin = _device_lut("linear", maxv, pixels.device).index_select(0, codes.view(-1)).view(codes.shape)
    del codes
    y = lin[..., 0] * float(_LUMA[0])
    y += lin[..., 1] * float(_LUMA[1])
    y += lin[..., 2] * float(_LUMA[2])
    return _y_to_L_torch(y)


def network_L(pixels: np.ndarray | DevicePixels, resolution: int) -> torch.Tensor:
    """The network's input: L* (1, R, R) resized with antialiasing (a plain bilinear subsample of a large
    photo would alias fine texture into noise the model never saw in training), on the pixels' device.

    Antialiased bilinear resizing is separable, so each strip is first reduced in width and only the
    (H, R) intermediate is kept: no full-resolution float plane (96 MB at 24 MP) is ever allocated. The
    result equals a one-shot ``F.interpolate(..., antialias=True)`` of the full L* plane."""
    H, W = pixels.shape[:2]
    if isinstance(pixels, DevicePixels):
        rows_of: Callable[[int, int], torch.Tensor] = functools.partial(device_luminance_rows, pixels)
        rows, device = max(1, DEVICE_STRIP_PIXELS // W), pixels.device
    else:
        rows_of, rows, device = (
            functools.partial(luminance_rows, pixels),
            max(1, STRIP_PIXELS // W),
            torch.device("cpu"),
        )
    narrow = torch.empty((H, resolution), dtype=torch.float32, device=device)
    for y0 in range(0, H, rows):
        y1 = min(H, y0 + rows)
        L = rows_of(y0, y1)[None, None]
        narrow[y0:y1] = F.interpolate(
            L, size=(y1 - y0, resolution), mode="bilinear", antialias=True, align_corners=False
        )[0, 0]
    small = F.interpolate(
        narrow[None, None], size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False
    )
    return small[0].clamp_(0.0, 100.0)


def resized_rgb01(pixels: np.ndarray, resolution: int) -> torch.Tensor:
    """A gray or RGB image as sRGB in [0, 1], (1, 3, R, R), antialiased and strip by strip like
    :func:`network_L` (used for palette references: no full-size float copy of a large photo)."""
    H, W = pixels.shape[:2]
    rows = max(1, STRIP_PIXELS // W)
    scale = 1.0 / max_value_of(pixels)
    narrow = torch.empty((3, H, resolution), dtype=torch.float32)
    for y0 in range(0, H, rows):
        y1 = min(H, y0 + rows)
        strip = torch.from_numpy(pixels[y0:y1].astype(np.float32)) * scale
        strip = strip[None].expand(3, -1, -1) if strip.ndim == 2 else strip.permute(2, 0, 1)
        narrow[:, y0:y1] = F.interpolate(
            strip[None], size=(y1 - y0, resolution), mode="bilinear", antialias=True, align_corners=False
        )[0]
    small = F.interpolate(
        narrow[None], size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False
    )
    return small.clamp_(0.0, 1.0)


class ChromaUpsampler:
    """Bilinear upsampling (PyTorch's ``align_corners=False`` convention) of a (2, R, R) a*b* map to
    (2, H, W), produced a strip of rows at a time.

    Bilinear interpolation is separable: the width pass is done once for all R source rows (2 x R x W,
    ~12 MB for a 6000-px-wide photo); each strip then blends two of those rows per output row. Works on
    the device ``ab`` is on.
    """

    def __init__(self, ab: torch.Tensor, height: int, width: int) -> None:
        R = ab.shape[-2]
        self.rows = F.interpolate(ab[None].float(), size=(R, width), mode="bilinear", align_corners=False)[0]
        self.height = height
        self.scale = R / height

    def strip(self, y0: int, y1: int) -> torch.Tensor:
        R = self.rows.shape[1]
        src = ((torch.arange(y0, y1, dtype=torch.float64, device=self.rows.device) + 0.5) * self.scale - 0.5).clamp_min(
            0.0
        )
        i0 = src.floor().long().clamp_max(R - 1)
        i1 = (i0 + 1).clamp_max(R - 1)
        w = (src - i0).float().view(1, -1, 1)
        top = self.rows[:, i0]
        return top.add_(self.rows[:, i1].sub(top).mul_(w))  # (2, n, W)


@functools.lru_cache(maxsize=4)
def _lab_constants(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(D65 white, XYZ -> linear RGB matrix) in float32 on ``device``: copied once, not once per strip."""
    return WHITE_D65.float().to(device), XYZ_TO_RGB.float().to(device)


def _f_inv(f: torch.Tensor) -> torch.Tensor:
    return torch.where(f > 0.2068966, f**3, (f - 16.0 / 116.0) / 7.787)


def lab_to_encoded(L: torch.Tensor, ab: torch.Tensor, max_value: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """L* (n, W) and a*b* (2, n, W) -> sRGB codes in [0, max_value], written into ``out`` ((3, n, W) view
    of any integer type, e.g. a permuted slice of the output image) or returned as (3, n, W) float codes.
    Applies the luminance-preserving gamut mapping described in the module docstring. Runs on the device
    of its inputs (the host and the device path share it)."""
    fy = (L + 16.0) / 116.0
    Y = _f_inv(fy).clamp_(0.0, 1.0)
    white, xyz_to_rgb = _lab_constants(L.device)
    xyz = torch.stack(
        [_f_inv(ab[0] / 500.0 + fy).mul_(white[0]), Y, _f_inv((fy - ab[1] / 200.0).clamp_min_(0.0)).mul_(white[2])]
    )
    d = torch.einsum("ij,jhw->ihw", xyz_to_rgb, xyz).sub_(Y)  # chroma offset from the gray of equal Y
    del xyz
    # largest t <= 1 with Y + t*d inside [0, 1] for every channel: room to 1 above, room to 0 below
    room = torch.where(d > 0, 1.0 - Y, Y).div_(d.abs().clamp_min_(1e-12))
    t = room.amin(0).clamp_(max=1.0)
    del room
    lin = d.mul_(t).add_(Y).clamp_(0.0, 1.0)
    rgb = torch.where(lin > 0.0031308, lin.pow(1.0 / 2.4).mul_(1.055).sub_(0.055), lin * 12.92)
    codes = rgb.mul_(max_value).add_(0.5).floor_().clamp_(0, max_value)
    if out is None:
        return codes
    out.copy_(codes)
    return out


def render(
    pixels: np.ndarray | DevicePixels,
    ab: torch.Tensor,
    alpha: np.ndarray | DevicePixels | None = None,
    strip_rows: int | None = None,
    workers: int | None = None,
    pad: bool = False,
) -> np.ndarray:
    """The colorized image at the input's resolution: (H, W, 3) or (H, W, 4) with ``alpha`` appended, in
    the input's bit depth (uint8 or uint16), as a host array. ``ab`` is the network's (2, R, R) prediction
    in Lab units, on any device. ``pad``: without alpha, still return 4 channels (the 4th at full
    opacity): Pillow keeps RGB images 4 bytes per pixel, so this layout can be handed to the encoder
    without another full-size copy.

    :class:`DevicePixels` take the device path (:func:`render_on_device`). For host pixels, strips run in
    a thread pool (``workers``, default torch's thread count) with torch's intra-op threading off: each
    strip is too small for intra-op parallelism to pay, and on a busy machine its spin-waiting made this
    stage several times slower (reports/benchmarks.md, "Inference: `chromapipe colorize` on CPU"), while
    independent strips parallelise cleanly (torch and NumPy release the GIL)."""
    if isinstance(pixels, DevicePixels):
        return render_on_device(pixels, ab, alpha, strip_rows=strip_rows, pad=pad)
    if isinstance(alpha, DevicePixels):
        alpha = alpha.numpy()
    H, W = pixels.shape[:2]
    strip_rows = strip_rows or max(1, STRIP_PIXELS // W)
    maxv = max_value_of(pixels)
    channels = 4 if alpha is not None or pad else 3
    out = np.empty((H, W, channels), dtype=pixels.dtype)
    target = torch.from_numpy(out) if out.dtype == np.uint8 else None  # torch's uint16 support is limited
    up = ChromaUpsampler(ab.detach().float().cpu(), H, W)

    def strip(y0: int) -> None:
        y1 = min(H, y0 + strip_rows)
        L, ab_strip = luminance_rows(pixels, y0, y1), up.strip(y0, y1)
        if target is not None:
            lab_to_encoded(L, ab_strip, maxv, out=target[y0:y1, :, :3].permute(2, 0, 1))
        else:
            out[y0:y1, :, :3] = lab_to_encoded(L, ab_strip, maxv).permute(1, 2, 0).numpy().astype(np.uint16)

    workers = max(1, min(workers or torch.get_num_threads(), 8))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if workers == 1:
            for y0 in range(0, H, strip_rows):
                strip(y0)
        else:
            with ThreadPoolExecutor(workers, thread_name_prefix="chromapipe-render") as pool:
                list(pool.map(strip, range(0, H, strip_rows)))
    finally:
        torch.set_num_threads(threads)
    if alpha is not None:
        out[..., 3] = alpha
    elif channels == 4:
        out[..., 3] = np.iinfo(out.dtype).max
    return out


def render_on_device(
    pixels: DevicePixels,
    ab: torch.Tensor,
    alpha: np.ndarray | DevicePixels | None = None,
    strip_rows: int | None = None,
    pad: bool = False,
) -> np.ndarray:
    """:func:`render` on the pixels' device, same result layout. Each strip of :data:`DEVICE_STRIP_PIXELS`
    gets its L*, its upsampled a*b* and its integer codes (alpha or padding included) on the device, and
    is then copied into the host result — asynchronously on CUDA, into page-locked memory, so the copy of
    one strip overlaps the computation of the next; the function returns once every copy has landed.

    Memory: on the device, beyond the image's own integer pixels, one strip's float temporaries (bounded
    by :data:`DEVICE_STRIP_PIXELS`), one integer strip and the upsampler's 2 x R x W rows; on the host,
    only the integer result. The page-locked result comes from torch's caching host allocator (sizes
    rounded up to a power of two), so a run re-uses it from photo to photo instead of paying
    ``cudaHostAlloc`` each time."""
    H, W = pixels.shape[:2]
    device = pixels.device
    strip_rows = strip_rows or max(1, DEVICE_STRIP_PIXELS // W)
    maxv = max_value_of(pixels)
    if alpha is not None and not isinstance(alpha, DevicePixels):
        alpha = DevicePixels.upload(alpha, device)
    channels = 4 if alpha is not None or pad else 3
    host = torch.empty((H, W, channels), dtype=pixels.data.dtype, pin_memory=device.type == "cuda")
    up = ChromaUpsampler(ab.detach().float().to(device), H, W)
    for y0 in range(0, H, strip_rows):
        y1 = min(H, y0 + strip_rows)
        strip = torch.empty((y1 - y0, W, channels), dtype=host.dtype, device=device)
        L, ab_strip = device_luminance_rows(pixels, y0, y1), up.strip(y0, y1)
        rgb = strip[..., :3].permute(2, 0, 1)
        if pixels.dtype == np.uint8:
            lab_to_encoded(L, ab_strip, maxv, out=rgb)
        else:  # codes up to 65535 overflow int16: through int32, whose low 16 bits are the uint16 code
            rgb.copy_(lab_to_encoded(L, ab_strip, maxv).to(torch.int32))
        del L, ab_strip
        if alpha is not None:
            strip[..., 3] = alpha.data[y0:y1]
        elif channels == 4:
            strip[..., 3] = _storage_code(maxv, pixels.dtype)
        host[y0:y1].copy_(strip, non_blocking=True)  # the allocator re-uses `strip` only after this copy
    if device.type == "cuda":
        torch.cuda.current_stream(device).synchronize()
    out = host.numpy()
    return out.view(np.uint16) if pixels.dtype == np.uint16 else out
