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
import logging
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
def _png_bit_depth(path: Path) -> int:
    with open(path, "rb") as fh:
        head = fh.read(26)
    return head[24] if len(head) == 26 and head[12:16] == b"IHDR" else 8


def _metadata(img: Image.Image) -> Metadata:
    exif = img.getexif()
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


def _pixels_from_png16(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    from torchvision.io import ImageReadMode, decode_png, read_file

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = decode_png(read_file(str(path)), ImageReadMode.UNCHANGED, apply_exif_orientation=True)
    arr = t.permute(1, 2, 0).numpy()
    color = arr[..., 0] if arr.shape[2] in (1, 2) else arr[..., :3]
    alpha = arr[..., -1] if arr.shape[2] in (2, 4) else None
    return color, alpha


def read_image(path: Path, max_pixels: int, device: torch.device | None = None) -> DecodedImage:
    """Decode ``path`` (first frame of multi-frame files) upright, in its own bit depth. ``device``: the
    colorize device when it runs the device path; on CUDA a JPEG :func:`nvjpeg_mode` accepts comes back
    as device pixels, everything else (and every file when ``device`` is None or the CPU) as host arrays."""
    decoder = "pil"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise InputError(f"{w}x{h} exceeds --max-pixels {max_pixels}")
                fmt = img.format or "PNG"
                orientation = int(img.getexif().get(_ORIENTATION, 1) or 1)
                meta = _metadata(img)
                mode = nvjpeg_mode(img, device)  # None unless device is CUDA
                on_device = (
                    _pixels_from_nvjpeg(path, mode, device, (w, h), orientation)
                    if mode is not None and device is not None
                    else None
                )
                if on_device is not None:  # else: Pillow decodes, as on the CPU
                    return DecodedImage(pixels=on_device, alpha=None, format=fmt, metadata=meta, decoder="nvjpeg")
                if fmt == "PNG" and _png_bit_depth(path) == 16 and not img.mode.startswith("I"):
                    pixels, alpha = _pixels_from_png16(path)  # torchvision applied the orientation
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
        raise InputError(str(exc)) from None
    except (OSError, ValueError, SyntaxError, RuntimeError, EOFError) as exc:  # truncated / corrupt data
        raise InputError(f"cannot decode: {exc}") from None
    return DecodedImage(pixels=pixels, alpha=alpha, format=fmt, metadata=meta, decoder=decoder)


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
    out_fmt = output_format(fmt)
    exif_bytes = meta.exif.tobytes() if meta.exif is not None else None
    four = pixels.shape[2] == 4
    has_alpha = four if has_alpha is None else has_alpha and four
    if pixels.dtype == np.uint16:
        if out_fmt == "PNG":
            write_png16(
                path,
                pixels if has_alpha or not four else pixels[..., :3],
                icc_profile=meta.icc_profile,
                exif=exif_bytes,
                dpi=meta.dpi,
                text=meta.png_text,
            )
            return
        pixels = ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)  # 8-bit-only writers
    if four and pixels.flags.c_contiguous:
        mode = "RGBA" if has_alpha else "RGBX"
        img = Image.frombuffer(mode, (pixels.shape[1], pixels.shape[0]), pixels, "raw", mode, 0, 1)  # shares memory
    else:
        img = Image.fromarray(np.ascontiguousarray(pixels[..., :3] if four else pixels), mode="RGB")
        if four:
            img.putalpha(Image.fromarray(np.ascontiguousarray(pixels[..., 3])))
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
    tmp = path.with_name(path.name + ".tmp")
    try:
        img.save(tmp, format=out_fmt, **kw)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    del img
