"""Per-image work of the prepare stage: read, decide, decode, crop, encode. Engine-independent.

Work is kept to what each image needs: size and pixel format come from the header, so a photo that is
too small or single-channel is refused (role ``train``) before it is decoded; a JPEG much larger than
the target is decoded at 1/2, 1/4 or 1/8 scale by libjpeg; resizing runs on uint8 pixels (torch's
integer antialiased kernel: no float copy of the photo); L*a*b* uses a lookup table; the round-trip
check reads back a strided sample, one batched conversion per chunk. Results are NumPy arrays in the
storage encoding, which cross a process pipe or Ray's object store without torch's tensor-sharing
machinery.

Role ``eval`` keeps every readable image: smaller ones are upscaled, gray ones kept (and counted), no
colorfulness filter. Role ``train`` applies the skip rules, except those its ``keep_small`` /
``keep_grayscale`` turn off (ChromaGAN trained on every ImageNet photo, whatever its size or color).
What counts as gray is ``gray_rule``: a tolerance on the channel spread, or the thesis' exact rule.
"""

from __future__ import annotations

import math
import platform
import time
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from chromapipe.config import DataConfig
from chromapipe.data.decode import (
    ImageHeader,
    SkipImage,
    decode_rgb,
    equal_channel_sums,
    grayscale_spread,
    read_header,
)
from chromapipe.data.encoding import encode_rgb, roundtrip_error, sample_pixels
from chromapipe.data.sources import SourceImage


class ImageResult(NamedTuple):
    """One source's outcome: stored views (n, 3, S, S), or the reason it was skipped."""

    pixels: np.ndarray | None
    skip: tuple[str, str] | None = None  # (reason code, detail)
    upscaled: bool = False  # smaller than data.size and enlarged (role eval, or keep_small)
    grayscale: bool = False  # gray: kept (role eval, or keep_grayscale) or skipped (role train)


class ChunkResult(NamedTuple):
    """The results of one chunk of consecutive sources, in source order, and who computed them."""

    results: list[ImageResult]
    roundtrip: int  # max sRGB uint8 error of the stored form over the chunk's sampled pixels
    node: str  # Ray node id, or the host name for the local engine
    seconds: float


def _resize(rgb: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize on uint8 pixels (torch's integer kernel: no float copy of the photo);
    (3, H, W) in the standard layout."""
    if tuple(rgb.shape[-2:]) == size:
        return rgb.contiguous()
    return F.interpolate(rgb[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0].contiguous()


def _grid_positions(n: int, h_room: int, w_room: int) -> list[tuple[int, int]]:
    """``n`` top-left corners spread evenly over the room left for a crop (row-major grid)."""
    side = math.ceil(math.sqrt(n))
    ys = [round(h_room * i / (side - 1)) if side > 1 else h_room // 2 for i in range(side)]
    xs = [round(w_room * j / (side - 1)) if side > 1 else w_room // 2 for j in range(side)]
    return [(y, x) for y in ys for x in xs][:n]


def needed_short_side(short: int, cfg: DataConfig) -> int:
    """The shorter side the decoded photo must keep for :func:`crops` not to upscale it needlessly."""
    if cfg.resize == "resize" or cfg.crops_per_image == 1:
        return cfg.size
    return max(cfg.size, min(2 * cfg.size, short))


def crops(rgb: torch.Tensor, cfg: DataConfig) -> torch.Tensor:
    """The square views of one photo, uint8 (n, 3, S, S).

    ``resize``: the whole photo squashed to S×S. ``center_crop``: the central square, resized to S×S.
    With ``crops_per_image`` = n > 1 the shorter side goes to min(2S, original) and n crops are taken on
    a grid, which turns a handful of large photos (the sample set) into a usable training set without
    upsampling any of them. A photo smaller than S (role eval only) is enlarged.
    """
    s = cfg.size
    h, w = rgb.shape[-2:]
    if cfg.resize == "resize":
        return _resize(rgb, (s, s))[None]
    n = cfg.crops_per_image
    if n == 1:
        side = min(h, w)
        y, x = (h - side) // 2, (w - side) // 2
        return _resize(rgb[:, y : y + side, x : x + side], (s, s))[None]
    short = needed_short_side(min(h, w), cfg)
    scale = short / min(h, w)
    img = _resize(rgb, (max(short, round(h * scale)), max(short, round(w * scale))))
    H, W = img.shape[-2:]
    return torch.stack([img[:, y : y + s, x : x + s] for y, x in _grid_positions(n, H - s, W - s)])


def _read(item: SourceImage) -> bytes:
    try:
        return item.path.read_bytes()
    except FileNotFoundError:
        raise SkipImage("missing", f"{item.path} does not exist") from None
    except OSError as exc:
        raise SkipImage("unreadable", str(exc)) from None


def _colorfulness(rgb: torch.Tensor) -> float:
    from chromapipe.metrics.colorfulness import colorfulness_per_image  # late: only when the filter is on

    return float(colorfulness_per_image(rgb[None])[0])


def _refuse_by_header(header: ImageHeader, cfg: DataConfig) -> None:
    """Role train's skip rules that the header alone decides: no pixel is decoded for these."""
    if min(header.width, header.height) < cfg.size and not cfg.keep_small:
        raise SkipImage("too_small", f"{header.width}x{header.height} is smaller than data.size={cfg.size}")
    if header.single_channel and _single_channel_is_gray(cfg) and not cfg.keep_grayscale:
        raise SkipImage("grayscale", f"single-channel image (mode {header.mode})")


def _single_channel_is_gray(cfg: DataConfig) -> bool:
    """A gray-only pixel format is gray under the thesis' rule; under the spread rule unless the tolerance is
    negative (which turns the gray test off)."""
    return cfg.gray_rule == "channel_sums" or cfg.grayscale_tolerance >= 0


def _gray_reason(data: bytes, header: ImageHeader, spread: float, cfg: DataConfig) -> str | None:
    """Why the photo counts as gray under ``cfg.gray_rule``, or None when it does not."""
    if header.single_channel:
        return f"single-channel image (mode {header.mode})" if _single_channel_is_gray(cfg) else None
    if cfg.gray_rule == "channel_sums":
        return (
            "R channel sum equals the mean of the channel sums (the thesis' rule)" if equal_channel_sums(data) else None
        )
    if spread <= cfg.grayscale_tolerance:
        return f"channel spread {spread:.1f} <= grayscale_tolerance={cfg.grayscale_tolerance}"
    return None


def _refuse_by_pixels(rgb: torch.Tensor, gray: str | None, cfg: DataConfig) -> None:
    """Role train's skip rules on the decoded pixels: gray (unless kept), or too little color."""
    if gray is not None and not cfg.keep_grayscale:
        raise SkipImage("grayscale", gray)
    if cfg.min_colorfulness > 0:
        cf = _colorfulness(rgb)
        if cf < cfg.min_colorfulness:
            raise SkipImage("low_colorfulness", f"colorfulness {cf:.1f} < min_colorfulness={cfg.min_colorfulness}")


def _process(item: SourceImage, cfg: DataConfig) -> tuple[ImageResult, torch.Tensor | None]:
    """Decode + filter + crop + encode one source; also returns the uint8 views for the round-trip
    check (never raises for a bad file: the result says why)."""
    train = cfg.role == "train"
    try:
        data = _read(item)
        header = read_header(data, cfg.max_pixels)
        if train:
            _refuse_by_header(header, cfg)
        short = min(header.width, header.height)
        rgb = decode_rgb(data, cfg.max_pixels, header=header, min_short=needed_short_side(short, cfg))
        spread = 0.0 if header.single_channel or cfg.gray_rule != "spread" else grayscale_spread(rgb)
        gray = _gray_reason(data, header, spread, cfg)
        if train:
            _refuse_by_pixels(rgb, gray, cfg)
        views = crops(rgb, cfg)
        pixels = encode_rgb(views, cfg.encoding)
        return ImageResult(pixels, upscaled=short < cfg.size, grayscale=gray is not None), views
    except SkipImage as skip:
        return ImageResult(None, skip=(skip.code, skip.detail), grayscale=skip.code == "grayscale"), None


def process_image(item: SourceImage, cfg: DataConfig) -> tuple[ImageResult, int]:
    """One source: its result and the round-trip error of its stored views (0 when skipped)."""
    result, views = _process(item, cfg)
    return result, 0 if views is None else roundtrip_error(result.pixels, views, cfg.encoding)


def _chunk_roundtrip(pairs: list[tuple[np.ndarray, torch.Tensor]], encoding: str) -> int:
    """The round-trip check of a whole chunk in one conversion: strided samples of every stored image,
    batched (a per-image call would cost more in per-call overhead than in arithmetic)."""
    if not pairs:
        return 0
    stored = np.concatenate([sample_pixels(p) for p, _ in pairs])
    views = torch.cat([sample_pixels(v) for _, v in pairs])
    return roundtrip_error(stored, views, encoding, step=1)


def process_chunk(items: list[SourceImage], cfg: DataConfig, node: str | None = None) -> ChunkResult:
    """A chunk of consecutive sources, one thread: parallelism comes from running chunks side by side."""
    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        outcomes = [_process(item, cfg) for item in items]
        roundtrip = _chunk_roundtrip([(r.pixels, v) for r, v in outcomes if v is not None], cfg.encoding)
    finally:
        torch.set_num_threads(threads)
    return ChunkResult(
        [r for r, _ in outcomes], roundtrip, node or platform.node(), round(time.perf_counter() - start, 4)
    )
