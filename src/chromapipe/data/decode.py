"""Decode one image file into sRGB uint8, or say precisely why it cannot be used for training.

torchvision's decoders do the work (JPEG incl. CMYK, PNG incl. palette and 16-bit, WebP, GIF, AVIF),
with EXIF orientation applied; Pillow, already a torchvision dependency, reads the header first (cheap
size check against decompression bombs, before any pixel is decoded) and decodes the formats torchvision
does not (BMP, TIFF, …). Every reason to drop an image is a :class:`SkipImage` with a short, stable
reason code, so the manifest can count and list them.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
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


def decode_rgb(data: bytes, max_pixels: int) -> torch.Tensor:
    """Bytes of an image file -> (3, H, W) uint8 sRGB. Raises SkipImage for unreadable or oversized input."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as header:
                width, height = header.size
                alpha = _has_alpha(header)
    except UnidentifiedImageError:
        if _looks_like_image(data):
            raise SkipImage("corrupt", "image signature present but the file cannot be parsed") from None
        raise SkipImage("not_an_image", "no known image format") from None
    except Exception as exc:  # noqa: BLE001 - any header failure means the file is unusable
        raise SkipImage("corrupt", f"unreadable header ({exc})") from None
    if width * height > max_pixels:
        raise SkipImage("too_large", f"{width}x{height} exceeds max_pixels={max_pixels}")
    mode = ImageReadMode.RGB_ALPHA if alpha else ImageReadMode.RGB
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


def grayscale_spread(rgb: torch.Tensor) -> float:
    """The 99th percentile over pixels of (max - min) across channels: ~0 for gray images.

    A percentile rather than the maximum keeps a gray JPEG with a few chroma-noise pixels gray, and a
    subsample keeps it cheap on large images.
    """
    step = max(1, int((rgb.shape[1] * rgb.shape[2] / 250_000) ** 0.5))
    sub = rgb[:, ::step, ::step].to(torch.int16)
    spread = (sub.max(dim=0).values - sub.min(dim=0).values).flatten().float()
    return float(torch.quantile(spread, 0.99))
