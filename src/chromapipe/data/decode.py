"""Decode one image file into sRGB uint8, or say precisely why it cannot be used for training.

torchvision's decoders do the work (JPEG incl. CMYK, PNG incl. palette and 16-bit, WebP, GIF, AVIF),
with EXIF orientation applied; Pillow, already a torchvision dependency, reads the header first (cheap
size check against decompression bombs, before any pixel is decoded) and decodes the formats torchvision
does not (BMP, TIFF, …). Every reason to drop an image is a :class:`SkipImage` with a short, stable
reason code, so the manifest can count and list them.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps, ImageStat, UnidentifiedImageError
from torchvision.io import ImageReadMode, decode_image

Image.MAX_IMAGE_PIXELS = None  # our own max_pixels check below replaces Pillow's warning/raise


class SkipImage(Exception):
    """An image that is not used, with a reason code (``corrupt``, ``grayscale``, ``too_small``, …)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")


def _looks_like_image(data: bytes) -> bool:
    """A known image signature: tells a damaged image file apart from a file that is no image at all."""
    return data.startswith(_SIGNATURES)


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info)


def _composite_on_white(rgba: torch.Tensor) -> torch.Tensor:
    """Transparent pixels have no meaningful color: show them on white, as viewers do."""
    rgb = rgba[:3].float()
    alpha = rgba[3:4].float() / 255.0
    return (rgb * alpha + 255.0 * (1.0 - alpha)).round().to(torch.uint8)


def _to_uint8(img: torch.Tensor) -> torch.Tensor:
    if img.dtype == torch.uint8:
        return img
    if img.dtype == torch.uint16:  # 16-bit PNG: 65535 -> 255
        return (img.to(torch.float32) / 257.0).round().clamp(0, 255).to(torch.uint8)
    raise SkipImage("unsupported", f"pixel type {img.dtype}")


def _decode_with_pillow(data: bytes) -> torch.Tensor:
    with Image.open(io.BytesIO(data)) as img:
        img = ImageOps.exif_transpose(img)
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit / 32-bit gray: scale, do not clip
            arr = np.asarray(img, dtype=np.float64)
            peak = 65535.0 if arr.max() > 255 else 255.0
            gray = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
            return torch.from_numpy(gray).unsqueeze(0).expand(3, -1, -1).contiguous()
        img = img.convert("RGBA" if _has_alpha(img) else "RGB")
        arr = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)
    return _composite_on_white(arr) if arr.shape[0] == 4 else arr


@dataclass(frozen=True)
class ImageHeader:
    """What the file header says, read before any pixel is decoded (cheap: no decompression)."""

    width: int
    height: int
    mode: str
    format: str | None
    alpha: bool

    @property
    def single_channel(self) -> bool:
        """A gray-only pixel format (L, LA, 16-bit, bilevel …): grayscale without looking at a pixel."""
        return self.mode in _SINGLE_CHANNEL_MODES


_SINGLE_CHANNEL_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def read_header(data: bytes, max_pixels: int) -> ImageHeader:
    """The header of an image file; raises SkipImage for a file that is no image, damaged, or too large."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                header = ImageHeader(img.size[0], img.size[1], img.mode, img.format, _has_alpha(img))
    except UnidentifiedImageError:
        if _looks_like_image(data):
            raise SkipImage("corrupt", "image signature present but the file cannot be parsed") from None
        raise SkipImage("not_an_image", "no known image format") from None
    except Exception as exc:  # noqa: BLE001 - any header failure means the file is unusable
        raise SkipImage("corrupt", f"unreadable header ({exc})") from None
    if header.width * header.height > max_pixels:
        raise SkipImage("too_large", f"{header.width}x{header.height} exceeds max_pixels={max_pixels}")
    return header


def _draft_request(header: ImageHeader, min_short: int | None) -> tuple[int, int] | None:
    """The size to ask libjpeg for when a DCT-domain reduction (1/2, 1/4, 1/8) keeps the shorter side
    >= ``min_short``; None when no reduction applies (not a plain JPEG, or not at least 2x larger)."""
    if min_short is None or header.format != "JPEG" or header.mode not in ("RGB", "L"):
        return None
    short = min(header.width, header.height)
    if short < 2 * min_short:
        return None
    return math.ceil(header.width * min_short / short), math.ceil(header.height * min_short / short)


def _decode_jpeg_reduced(data: bytes, request: tuple[int, int]) -> torch.Tensor:
    """JPEG decoded at 1/2, 1/4 or 1/8 scale by libjpeg itself (deterministic; the IDCT does the
    downscaling, so far fewer pixels are decoded), EXIF orientation applied, as (3, H, W) uint8."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft(img.mode, request)
            img = ImageOps.exif_transpose(img)
            rgb = img if img.mode == "RGB" else img.convert("RGB")
            with warnings.catch_warnings():  # a read-only view is fine: nothing writes into the pixels
                warnings.simplefilter("ignore")
                return torch.from_numpy(np.asarray(rgb)).permute(2, 0, 1)
    except (OSError, SyntaxError, ValueError) as exc:
        raise SkipImage("corrupt", str(exc)) from None


def decode_rgb(
    data: bytes, max_pixels: int, header: ImageHeader | None = None, min_short: int | None = None
) -> torch.Tensor:
    """Bytes of an image file -> (3, H, W) uint8 sRGB. Raises SkipImage for unreadable or oversized input.

    ``min_short``: the shorter side the caller needs; a JPEG at least twice that size is decoded at a
    reduced scale (the result's shorter side stays >= ``min_short``). ``header``: from
    :func:`read_header`, when the caller already has it.
    """
    header = header or read_header(data, max_pixels)
    request = _draft_request(header, min_short)
    if request is not None:
        return _decode_jpeg_reduced(data, request)
    mode = ImageReadMode.RGB_ALPHA if header.alpha else ImageReadMode.RGB
    buf = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    try:
        img = decode_image(buf, mode=mode, apply_exif_orientation=True)
    except RuntimeError as exc:
        if "Unsupported image file" not in str(exc):
            raise SkipImage("corrupt", str(exc).split(",")[-1].strip()) from None
        try:
            return _decode_with_pillow(data)
        except SkipImage:
            raise
        except Exception as pil_exc:  # noqa: BLE001
            raise SkipImage("corrupt", str(pil_exc)) from None
    img = _to_uint8(img)
    return _composite_on_white(img) if img.shape[0] == 4 else img


#: pixels the grayscale test looks at: a strided subsample of about this many keeps it cheap on any size
GRAY_SAMPLE_PIXELS = 16_384


def grayscale_spread(rgb: torch.Tensor) -> float:
    """The 99th percentile over pixels of (max - min) across channels: ~0 for gray images.

    A percentile rather than the maximum keeps a gray JPEG with a few chroma-noise pixels gray, and a
    strided subsample (about GRAY_SAMPLE_PIXELS) keeps it cheap on any size. The percentile is read off
    a 256-bin histogram of the uint8 spreads (linear interpolation between order statistics, as
    torch.quantile does): no float copy of the image and no sort. NumPy's element-wise uint8 kernels on
    the strided planes cost less than torch's reductions here.
    """
    step = max(1, round((rgb.shape[-2] * rgb.shape[-1] / GRAY_SAMPLE_PIXELS) ** 0.5))
    r, g, b = rgb.numpy()[:, ::step, ::step]
    spread = np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)  # uint8: max >= min
    cumulative = np.cumsum(np.bincount(spread.ravel(), minlength=256))
    n = spread.size
    position = 0.99 * (n - 1)
    lo = math.floor(position)
    v_lo, v_hi = (int(np.searchsorted(cumulative, k, side="right")) for k in (lo, min(lo + 1, n - 1)))
    return v_lo + (position - lo) * (v_hi - v_lo)


def equal_channel_sums(data: bytes) -> bool:
    """The thesis' grayscale rule (its ``pre_processing.py``), with the library it used: Pillow mode ``L``, or,
    after ``convert("RGB")``, the R channel's sum (``ImageStat``) equals the mean of the three channel sums.

    Exact equality on the full-resolution image: a gray photo with one tinted pixel is not gray here, unlike
    :func:`grayscale_spread`'s tolerance. Decodes the file once more with Pillow (as the thesis did), so it
    costs a full decode per image; its result does not depend on our decoder.
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.mode == "L":
                return True
            sums = ImageStat.Stat(img.convert("RGB")).sum
    except Exception as exc:  # noqa: BLE001 - read_header accepted it; a decode failure is a damaged file
        raise SkipImage("corrupt", f"Pillow cannot decode it ({exc})") from None
    return sum(sums) / 3 == sums[0]
