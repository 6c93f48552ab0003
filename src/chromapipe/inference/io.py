"""Reading user photos into integer pixel arrays and writing colorized results with their metadata.

Decoding keeps the file's own integer type (uint8, or uint16 for 16-bit files): the float L* is computed
later in strips (see :mod:`chromapipe.inference.fullres`), so a 24 MP photo costs 72 MB here, not a
float64 copy. EXIF orientation is applied on read (and the tag reset on write, so viewers do not rotate
twice). Pillow decodes everything except 16-bit colour PNGs, which it truncates to 8 bits; torchvision's
PNG decoder keeps those at 16 bits. On a CUDA colorize run, 8-bit RGB and gray JPEGs are decoded by
nvJPEG straight into GPU memory (see :func:`nvjpeg_mode`): Pillow still reads the header and metadata,
only the pixels skip the host, and anything nvJPEG cannot decode falls back to Pillow.

Output format follows the input where the format can hold a full-colour photo (JPEG, PNG, WebP, TIFF,
BMP); anything else (GIF's 256-colour palette, PPM, ICO, …) is written as PNG. Alpha is kept (all of
those formats but JPEG store it, and a JPEG input has none). EXIF, DPI and PNG text are kept; an ICC
profile is kept when it describes RGB data — a gray or CMYK profile cannot describe the RGB output and
is dropped.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import torch
from PIL import Image, PngImagePlugin

from chromapipe.inference.fullres import DevicePixels
from chromapipe.inference.png16 import write_png16

if TYPE_CHECKING:
    from torchvision.io import ImageReadMode

log = logging.getLogger("chromapipe.colorize")

#: input format -> (Pillow writer, extension used when the input's own suffix is not kept)
_KEPT_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp", "MPO": ".jpg"}
_ORIENTATION = 0x0112

# ``--max-pixels`` (checked from the header, before decoding) replaces Pillow's process-wide bomb limit,
# which would otherwise refuse a larger limit the user asked for; data.decode does the same.
Image.MAX_IMAGE_PIXELS = None


class InputError(Exception):
    """A file that cannot be colorized (not an image, corrupt, too large); the message says why."""


class TooLarge(InputError):
    """An image over the pixel limit, found from its header before any pixel is decoded."""

    def __init__(self, width: int, height: int, limit: int) -> None:
        super().__init__(f"{width}x{height} exceeds --max-pixels {limit}")
        self.width, self.height, self.limit = width, height, limit


@dataclasses.dataclass
class Metadata:
    exif: Image.Exif | None = None
    icc_profile: bytes | None = None
    dpi: tuple[float, float] | None = None
    png_text: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class DecodedImage:
    """``pixels``: (H, W) gray or (H, W, 3) RGB, uint8 or uint16; ``alpha``: (H, W) of the same type or None.

    Either is a host array or, on the GPU path, :class:`~chromapipe.inference.fullres.DevicePixels`
    (which mirrors the array's ``shape``, ``dtype`` and ``nbytes``): ``fullres.network_L`` and
    ``fullres.render`` take both and return what the encoder needs on the host, so the rest of the
    pipeline does not care where the pixels are. ``decoder`` says which decoder produced them
    (``pil``, ``torchvision-png`` or ``nvjpeg``), for logs and benchmarks."""

    pixels: np.ndarray | DevicePixels
    alpha: np.ndarray | DevicePixels | None
    format: str
    metadata: Metadata
    decoder: str = "pil"

    @property
    def size(self) -> tuple[int, int]:
        return self.pixels.shape[1], self.pixels.shape[0]

    @property
    def nbytes(self) -> int:
        return self.pixels.nbytes + (self.alpha.nbytes if self.alpha is not None else 0)

    def to_device(self, device: torch.device) -> DecodedImage:
        """The image with its pixels (and alpha) on ``device``: host arrays are uploaded once, pixels
        already there (nvJPEG) stay; the host arrays are freed once the caller drops this image."""

        def up(a: np.ndarray | DevicePixels) -> DevicePixels:
            return a if isinstance(a, DevicePixels) else DevicePixels.upload(a, device)

        return dataclasses.replace(self, pixels=up(self.pixels), alpha=None if self.alpha is None else up(self.alpha))


# -- reading ---------------------------------------------------------------------------------------------
def _png_bit_depth(source: Path | bytes) -> int:
    if isinstance(source, bytes):
        head = source[:26]
    else:
        with open(source, "rb") as fh:
            head = fh.read(26)
    return head[24] if len(head) == 26 and head[12:16] == b"IHDR" else 8


def _metadata(img: Image.Image, copy_exif: bool = False) -> Metadata:
    """``copy_exif``: work on a copy of the EXIF (the caller's own image object keeps its orientation tag)."""
    exif = img.getexif()
    if copy_exif and len(exif):
        own = Image.Exif()
        own.load(exif.tobytes())
        exif = own
    exif.pop(_ORIENTATION, None)  # pixels are already upright
    icc = img.info.get("icc_profile")
    if icc and icc[16:20] != b"RGB ":
        icc = None
    dpi = img.info.get("dpi")
    text = {k: v for k, v in getattr(img, "text", {}).items() if isinstance(v, str)} if img.format == "PNG" else {}
    return Metadata(
        exif=exif if len(exif) else None, icc_profile=icc or None, dpi=tuple(dpi) if dpi else None, png_text=text
    )


def _asarray(img: Image.Image, rows: int = 256) -> np.ndarray:
    """``np.asarray(img)`` strip by strip: the one-shot version goes through ``tobytes()``, which holds
    the image's bytes twice (chunks, then the joined copy) on top of Pillow's own 4-byte-per-pixel copy."""
    W, H = img.size
    first = np.asarray(img.crop((0, 0, W, min(rows, H))))
    out = np.empty((H, *first.shape[1:]), dtype=first.dtype)
    out[: first.shape[0]] = first
    for y0 in range(rows, H, rows):
        y1 = min(H, y0 + rows)
        out[y0:y1] = np.asarray(img.crop((0, y0, W, y1)))
    return out


def _pixels_from_pillow(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Gray stays gray (one channel), 16-bit gray stays 16-bit; everything else becomes RGB(A) uint8."""
    mode = img.mode
    if mode == "L":
        return _asarray(img), None
    if mode == "1":
        return np.asarray(img.convert("L")), None
    if mode in ("LA", "La"):
        arr = np.asarray(img.convert("LA"))
        return arr[..., 0], arr[..., 1]
    if mode.startswith("I;16"):
        return _asarray(img).astype(np.uint16, copy=False), None
    if mode == "I":  # 32-bit integer gray (some TIFFs): values are 16-bit codes
        return np.clip(np.asarray(img), 0, 65535).astype(np.uint16), None
    if mode == "F":  # float gray: [0, 1] or [0, 255]
        arr = np.asarray(img, dtype=np.float32)
        scale = 65535.0 if float(arr.max(initial=0.0)) <= 1.0 else 65535.0 / 255.0
        return np.clip(arr * scale + 0.5, 0, 65535).astype(np.uint16), None
    if mode == "RGB":
        return _asarray(img), None
    has_alpha = "A" in mode or "a" in mode or (mode == "P" and "transparency" in img.info)
    if has_alpha:
        arr = _asarray(img.convert("RGBA"))
        return arr[..., :3], arr[..., 3]
    return _asarray(img.convert("RGB")), None


#: EXIF orientation -> (flip the rows, flip the columns, then swap the two axes): the eight cases of
#: ``ImageOps.exif_transpose`` (6 = rotate 90° clockwise, 8 = counter-clockwise), one table for both
#: :func:`orient` (host arrays) and :func:`orient_tensor` (tensors on any device)
_EXIF_TRANSFORMS = {
    2: (False, True, False),
    3: (True, True, False),
    4: (True, False, False),
    5: (False, False, True),
    6: (True, False, True),
    7: (True, True, True),
    8: (False, True, True),
}


def orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an (H, W, ...) array, as ``ImageOps.exif_transpose`` does.

    Done on the decoded array rather than the Pillow image because Pillow stores RGB in 4 bytes per pixel
    and transposing there costs two extra full-size copies on a 24 MP photo."""
    flip_rows, flip_cols, swap = _EXIF_TRANSFORMS.get(orientation, (False, False, False))
    if flip_rows:
        arr = arr[::-1]
    if flip_cols:
        arr = arr[:, ::-1]
    return np.ascontiguousarray(arr.swapaxes(0, 1) if swap else arr)


def orient_tensor(t: torch.Tensor, orientation: int) -> torch.Tensor:
    """:func:`orient` for an (H, W, ...) tensor on any device (the nvJPEG path orients on the GPU), as a
    contiguous tensor."""
    flip_rows, flip_cols, swap = _EXIF_TRANSFORMS.get(orientation, (False, False, False))
    dims = [d for d, flip in ((0, flip_rows), (1, flip_cols)) if flip]
    if dims:
        t = t.flip(dims)
    return (t.transpose(0, 1) if swap else t).contiguous()


def nvjpeg_mode(img: Image.Image, device: torch.device | None) -> ImageReadMode | None:
    """How to decode ``img`` (an opened, not yet decoded Pillow image) with nvJPEG on ``device``, or None
    when Pillow decodes it: only on a CUDA device, only plain JPEG files (an MPO's extra pictures are
    Pillow's business) whose Pillow mode is 8-bit RGB or L. CMYK/YCCK keep Pillow's conversions, and an
    Adobe-marked JPEG with transform 0 stores RGB rather than YCbCr, which libjpeg honours and a GPU
    decoder might not. Anything else nvJPEG cannot handle (arithmetic coding, odd subsampling, ...) is
    found by trying: :func:`read_image` falls back to Pillow on a decode error."""
    if device is None or device.type != "cuda" or img.format != "JPEG" or img.mode not in ("RGB", "L"):
        return None
    if img.mode == "RGB" and img.info.get("adobe_transform") == 0:
        return None
    from torchvision.io import ImageReadMode

    return ImageReadMode.RGB if img.mode == "RGB" else ImageReadMode.GRAY


def _nvjpeg_decode(data: torch.Tensor, mode: ImageReadMode, device: torch.device) -> torch.Tensor:
    """torchvision's nvJPEG decode: (C, H, W) uint8 on ``device`` (its own function so tests can stand in)."""
    from torchvision.io import decode_jpeg

    return decode_jpeg(data, mode=mode, device=device)


def jpeg_complete(data: bytes | bytearray) -> bool:
    """Whether the JPEG stream ends: an EOI marker (FF D9) after its last start-of-scan (FF DA).

    Why: Pillow refuses a truncated JPEG ("image file is truncated", a failed file on the CPU path), while a
    decoder that tolerates it (as Pillow does with ``LOAD_TRUNCATED_IMAGES``, filling the missing rows)
    would colorize it. torchvision's CPU decoder refuses it too; what nvJPEG does is not established.
    Checking the stream before nvJPEG sees it keeps the GPU path's verdict the CPU's, whatever nvJPEG does.
    Entropy-coded data stuffs every FF with 00, so neither marker occurs inside a scan; an EXIF thumbnail's
    own markers come before the main image's scans. Any doubt means Pillow.
    """
    return data.rfind(b"\xff\xd9") > data.rfind(b"\xff\xda") >= 0


def _pixels_from_nvjpeg(
    path: Path, mode: ImageReadMode, device: torch.device, size: tuple[int, int], orientation: int
) -> DevicePixels | None:
    """The JPEG's pixels decoded on ``device`` and oriented there, or None (logged at debug level) when the
    stream is incomplete (:func:`jpeg_complete`), nvJPEG fails or disagrees with Pillow's header about the
    size, so the caller decodes with Pillow."""
    data = bytearray(path.stat().st_size)  # read once into a buffer both the check and the decoder use, no copy
    with open(path, "rb") as fh:
        fh.readinto(data)
    if not jpeg_complete(data):
        log.debug("%s: the JPEG stream has no end marker after its last scan; decoding with Pillow", path)
        return None
    try:
        chw = _nvjpeg_decode(torch.frombuffer(data, dtype=torch.uint8), mode, device)
    except Exception as exc:  # noqa: BLE001 - any nvJPEG failure means: decode on the host instead
        log.debug("%s: nvJPEG cannot decode it (%s: %s); decoding with Pillow", path, type(exc).__name__, exc)
        return None
    if tuple(chw.shape[1:]) != (size[1], size[0]):
        log.debug("%s: nvJPEG decoded %s, the header says %dx%d; decoding with Pillow", path, tuple(chw.shape), *size)
        return None
    hwc = chw[0] if chw.shape[0] == 1 else chw.permute(1, 2, 0)
    return DevicePixels(orient_tensor(hwc, orientation), np.dtype(np.uint8))


def _pixels_from_png16(source: Path | bytes) -> tuple[np.ndarray, np.ndarray | None]:
    from torchvision.io import ImageReadMode, decode_png, read_file

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = torch.frombuffer(bytearray(source), dtype=torch.uint8) if isinstance(source, bytes) else None
        encoded = read_file(str(source)) if data is None else data
        t = decode_png(encoded, ImageReadMode.UNCHANGED, apply_exif_orientation=True)
    arr = t.permute(1, 2, 0).numpy()
    color = arr[..., 0] if arr.shape[2] in (1, 2) else arr[..., :3]
    alpha = arr[..., -1] if arr.shape[2] in (2, 4) else None
    return color, alpha


def read_image(source: Path | bytes, max_pixels: int, device: torch.device | None = None) -> DecodedImage:
    """Decode ``source`` — a file, or a file's bytes (an HTTP request's image) — upright, in its own bit depth,
    first frame of multi-frame files. ``device``: the colorize device when it runs the device path; on CUDA a
    JPEG file :func:`nvjpeg_mode` accepts comes back as device pixels, everything else (and every file when
    ``device`` is None or the CPU) as host arrays."""
    decoder = "pil"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise TooLarge(w, h, max_pixels)
                fmt = img.format or "PNG"
                orientation = int(img.getexif().get(_ORIENTATION, 1) or 1)
                meta = _metadata(img)
                mode = nvjpeg_mode(img, device) if isinstance(source, Path) else None  # None unless device is CUDA
                on_device = (
                    _pixels_from_nvjpeg(source, mode, device, (w, h), orientation)
                    if mode is not None and device is not None and isinstance(source, Path)
                    else None
                )
                if on_device is not None:  # else: Pillow decodes, as on the CPU
                    return DecodedImage(pixels=on_device, alpha=None, format=fmt, metadata=meta, decoder="nvjpeg")
                if fmt == "PNG" and _png_bit_depth(source) == 16 and not img.mode.startswith("I"):
                    pixels, alpha = _pixels_from_png16(source)  # torchvision applied the orientation
                    orientation, decoder = 1, "torchvision-png"
                else:
                    img.load()
                    pixels, alpha = _pixels_from_pillow(img)
                img.close()  # frees Pillow's pixel copy now (leaving the with-block only closes the file)
            pixels = orient(pixels, orientation)
            alpha = orient(alpha, orientation) if alpha is not None else None
    except InputError:
        raise
    except (Image.UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise InputError(str(exc) if isinstance(source, Path) else "not an image Pillow can read") from None
    except (OSError, ValueError, SyntaxError, RuntimeError, EOFError) as exc:  # truncated / corrupt data
        raise InputError(f"cannot decode: {exc}") from None
    return DecodedImage(pixels=pixels, alpha=alpha, format=fmt, metadata=meta, decoder=decoder)


def decode_pil(img: Image.Image, max_pixels: int) -> DecodedImage:
    """An in-memory Pillow image as :func:`read_image` decodes a file: upright (EXIF orientation applied, as
    ``ImageOps.exif_transpose`` would; the caller's image is left as it is), gray kept gray, 16-bit gray kept
    16-bit. Pillow holds colour images in 8 bits, so a 16-bit colour PNG opened by Pillow arrives here in 8
    bits (pass its path or bytes to keep 16)."""
    w, h = img.size
    if w * h > max_pixels:
        raise TooLarge(w, h, max_pixels)
    try:
        orientation = int(img.getexif().get(_ORIENTATION, 1) or 1)
        meta = _metadata(img, copy_exif=True)
        pixels, alpha = _pixels_from_pillow(img)
    except (OSError, ValueError, SyntaxError, RuntimeError, EOFError) as exc:
        raise InputError(f"cannot decode: {exc}") from None
    pixels = orient(pixels, orientation)
    alpha = orient(alpha, orientation) if alpha is not None else None
    return DecodedImage(pixels=pixels, alpha=alpha, format=img.format or "PNG", metadata=meta)


def decode_array(arr: np.ndarray, max_pixels: int) -> DecodedImage:
    """An array as an image: (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA; uint8 or uint16 codes, or floats in
    [0, 1] (stored as 16-bit codes, so no precision is lost before L* is computed). Anything else is an
    :class:`InputError` naming what was given, rather than a guess."""
    arr = np.asarray(arr)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)) or 0 in arr.shape:
        raise InputError(f"expected an (H, W), (H, W, 3) or (H, W, 4) array, got shape {arr.shape}")
    if arr.shape[0] * arr.shape[1] > max_pixels:
        raise TooLarge(arr.shape[1], arr.shape[0], max_pixels)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            raise InputError("a float image must hold finite values in [0, 1]")
        arr = (arr.astype(np.float64) * 65535.0 + 0.5).astype(np.uint16)
    elif arr.dtype not in (np.uint8, np.uint16):
        raise InputError(f"expected uint8, uint16 or float pixels in [0, 1], got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    alpha = np.ascontiguousarray(arr[..., 3]) if arr.ndim == 3 and arr.shape[2] == 4 else None
    pixels = np.ascontiguousarray(arr[..., :3] if arr.ndim == 3 else arr)
    return DecodedImage(pixels=pixels, alpha=alpha, format="PNG", metadata=Metadata())


ImageLike = str | os.PathLike | bytes | Image.Image | np.ndarray | DecodedImage


def as_image(image: ImageLike, max_pixels: int) -> DecodedImage:
    """Any image the Python API takes: a path, a file's bytes, a Pillow image or an array (or one decoded
    already, returned as it is)."""
    if isinstance(image, DecodedImage):
        return image
    if isinstance(image, Image.Image):
        return decode_pil(image, max_pixels)
    if isinstance(image, np.ndarray):
        return decode_array(image, max_pixels)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return read_image(bytes(image), max_pixels)
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        return read_image(path, max_pixels)
    raise InputError(f"expected a path, bytes, a PIL image or a numpy array, got {type(image).__name__}")


# -- finding inputs --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Job:
    """One input file and where its output goes, relative to the output directory (suffix decided later)."""

    src: Path
    rel: Path


def _image_suffixes() -> set[str]:
    Image.init()
    return {ext.lower() for ext in Image.registered_extensions()}


def find_images(inputs: Iterable[str | os.PathLike[str]]) -> tuple[list[Job], list[tuple[Path, str]]]:
    """Files as given, directories walked recursively (image suffixes only, hidden entries skipped; the
    tree is mirrored under the output directory so equal names in different folders do not collide).
    Returns the jobs and the inputs that do not exist."""
    suffixes = _image_suffixes()
    jobs: list[Job] = []
    missing: list[tuple[Path, str]] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            found = []
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    f = Path(root) / name
                    if not name.startswith(".") and f.suffix.lower() in suffixes:
                        found.append(Job(f, f.relative_to(p)))
            jobs.extend(found)
        elif p.exists():
            jobs.append(Job(p, Path(p.name)))
        else:
            missing.append((p, "no such file or directory"))
    return jobs, missing


# -- writing ---------------------------------------------------------------------------------------------
def output_suffix(src: Path, fmt: str) -> str:
    """Keep the input's suffix when its format is written back as is; otherwise the kept format's."""
    if fmt in _KEPT_FORMATS:
        own = src.suffix
        return (
            own
            if own and Image.registered_extensions().get(own.lower()) == ("JPEG" if fmt == "MPO" else fmt)
            else _KEPT_FORMATS[fmt]
        )
    return ".png"


def output_format(fmt: str) -> str:
    """The Pillow format an input format is written back as."""
    return "JPEG" if fmt == "MPO" else fmt if fmt in _KEPT_FORMATS else "PNG"


def wants_padding(fmt: str, pixels: np.ndarray | DevicePixels, alpha: np.ndarray | DevicePixels | None) -> bool:
    """Whether to render 4-channel (RGBX) output: JPEG's encoder takes it without a copy."""
    return output_format(fmt) == "JPEG" and alpha is None and pixels.dtype == np.uint8


def write_image(
    path: Path, pixels: np.ndarray, fmt: str, meta: Metadata, quality: int, has_alpha: bool | None = None
) -> None:
    """Write (H, W, 3|4) uint8/uint16 pixels in ``fmt`` (or PNG), atomically (temp file, then rename).

    ``has_alpha=False`` with 4 channels means RGBX padding (see ``fullres.render(pad=True)``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            encode_image(fh, pixels, fmt, meta, quality, has_alpha)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def encode_image(
    fh: BinaryIO, pixels: np.ndarray, fmt: str, meta: Metadata, quality: int, has_alpha: bool | None = None
) -> str:
    """Encode (H, W, 3|4) uint8/uint16 pixels as :func:`output_format` of ``fmt`` into the open binary file
    ``fh`` (a file, or the buffer of an HTTP answer), with the metadata that still applies; returns the format
    written."""
    out_fmt = output_format(fmt)
    exif_bytes = meta.exif.tobytes() if meta.exif is not None else None
    four = pixels.shape[2] == 4
    has_alpha = four if has_alpha is None else has_alpha and four
    if pixels.dtype == np.uint16:
        if out_fmt == "PNG":
            write_png16(
                fh,
                pixels if has_alpha or not four else pixels[..., :3],
                icc_profile=meta.icc_profile,
                exif=exif_bytes,
                dpi=meta.dpi,
                text=meta.png_text,
            )
            return out_fmt
        pixels = to_8bit(pixels)  # 8-bit-only writers
    img = to_pil(pixels, has_alpha)
    if (img.mode == "RGBX" and out_fmt != "JPEG") or (out_fmt == "JPEG" and img.mode == "RGBA"):
        img = img.convert("RGB")
    kw: dict[str, Any] = {}
    if meta.icc_profile:
        kw["icc_profile"] = meta.icc_profile
    if exif_bytes and out_fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        kw["exif"] = exif_bytes
    if meta.dpi and out_fmt in ("JPEG", "PNG", "TIFF", "BMP"):
        kw["dpi"] = meta.dpi
    if out_fmt in ("JPEG", "WEBP"):
        kw["quality"] = quality
    if out_fmt == "TIFF":
        kw["compression"] = "tiff_deflate"
    if out_fmt == "PNG" and meta.png_text:
        info = PngImagePlugin.PngInfo()
        for k, v in meta.png_text.items():
            info.add_itxt(k, v)
        kw["pnginfo"] = info
    img.save(fh, format=out_fmt, **kw)
    del img
    return out_fmt


def to_8bit(pixels: np.ndarray) -> np.ndarray:
    """uint16 codes to uint8 by rounding (x + 128) // 257: what every 8-bit-only writer gets."""
    return ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8) if pixels.dtype == np.uint16 else pixels


def to_pil(pixels: np.ndarray, has_alpha: bool, meta: Metadata | None = None) -> Image.Image:
    """(H, W, 3|4) uint8 pixels as a Pillow image: RGBA with alpha, RGBX for padded RGB (sharing the array's
    memory), else RGB. ``meta``: its ICC profile, EXIF and DPI go into the image's ``info``, where Pillow's
    writers look for them."""
    four = pixels.shape[2] == 4
    if four and pixels.flags.c_contiguous:
        mode = "RGBA" if has_alpha else "RGBX"
        img = Image.frombuffer(mode, (pixels.shape[1], pixels.shape[0]), pixels, "raw", mode, 0, 1)  # shares memory
    else:
        img = Image.fromarray(np.ascontiguousarray(pixels[..., :3] if four else pixels), mode="RGB")
        if four and has_alpha:
            img.putalpha(Image.fromarray(np.ascontiguousarray(pixels[..., 3])))
    if meta is not None:
        if meta.icc_profile:
            img.info["icc_profile"] = meta.icc_profile
        if meta.exif is not None:
            img.info["exif"] = meta.exif.tobytes()
        if meta.dpi:
            img.info["dpi"] = meta.dpi
    return img
