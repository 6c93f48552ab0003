"""The prepare stage: source images -> decoded, filtered, cropped, L*a*b* shards per split + manifest.

Images stream through one at a time (optionally across a process pool, results kept in source order
so shard contents and hashes are deterministic); only one shard per split is ever buffered.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from chromapipe.color import lab_to_rgb_uint8, rgb_uint8_to_lab
from chromapipe.config import DataConfig, resolve_path, to_dict
from chromapipe.data.decode import SkipImage, decode_rgb, grayscale_spread
from chromapipe.metrics.colorfulness import colorfulness_per_image
from chromapipe.data.shards import LAB_DTYPE, ShardWriter
from chromapipe.data.sources import SourceImage, list_sources
from chromapipe.data.splits import SPLITS, assign_splits

log = logging.getLogger(__name__)


def _resize_short_side(rgb: torch.Tensor, short: int) -> torch.Tensor:
    h, w = rgb.shape[-2:]
    scale = short / min(h, w)
    size = (max(short, round(h * scale)), max(short, round(w * scale)))
    if size == (h, w):
        return rgb
    out = F.interpolate(rgb[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    return out.round().clamp(0, 255).to(torch.uint8)


def _grid_positions(n: int, h_room: int, w_room: int) -> list[tuple[int, int]]:
    """``n`` top-left corners spread evenly over the room left for a crop (row-major grid)."""
    side = math.ceil(math.sqrt(n))
    ys = [round(h_room * i / (side - 1)) if side > 1 else h_room // 2 for i in range(side)]
    xs = [round(w_room * j / (side - 1)) if side > 1 else w_room // 2 for j in range(side)]
    return [(y, x) for y in ys for x in xs][:n]


def crops(rgb: torch.Tensor, cfg: DataConfig) -> list[torch.Tensor]:
    """The square training views of one photo (uint8 (3, S, S) each).

    ``resize``: the whole photo squashed to S×S. ``center_crop``: shorter side to S, centre crop. With
    ``crops_per_image`` = n > 1 the shorter side goes to min(2S, original) and n crops are taken on a
    grid, which turns a handful of large photos (the sample set) into a usable training set without
    upsampling any of them.
    """
    s = cfg.size
    if cfg.resize == "resize":
        out = F.interpolate(rgb[None].float(), size=(s, s), mode="bilinear", antialias=True, align_corners=False)[0]
        return [out.round().clamp(0, 255).to(torch.uint8)]
    n = cfg.crops_per_image
    short = s if n == 1 else max(s, min(2 * s, min(rgb.shape[-2:])))
    img = _resize_short_side(rgb, short)
    h, w = img.shape[-2:]
    positions = [((h - s) // 2, (w - s) // 2)] if n == 1 else _grid_positions(n, h - s, w - s)
    return [img[:, y : y + s, x : x + s].contiguous() for y, x in positions]


def process_image(item: SourceImage, cfg: DataConfig) -> tuple[list[torch.Tensor], int] | tuple[None, tuple[str, str]]:
    """Decode + filter + crop + convert one source.

    Returns (Lab tensors, max sRGB round-trip error of their float16 form) or (None, (reason, detail)).
    """
    try:
        try:
            data = item.path.read_bytes()
        except OSError as exc:
            raise SkipImage("unreadable", str(exc)) from None
        rgb = decode_rgb(data, cfg.max_pixels)
        h, w = rgb.shape[-2:]
        if min(h, w) < cfg.size:
            raise SkipImage("too_small", f"{w}x{h} is smaller than data.size={cfg.size}")
        spread = grayscale_spread(rgb)
        if spread <= cfg.grayscale_tolerance:
            raise SkipImage("grayscale", f"channel spread {spread:.1f} <= grayscale_tolerance={cfg.grayscale_tolerance}")
        if cfg.min_colorfulness > 0:
            cf = float(colorfulness_per_image(rgb[None])[0])
            if cf < cfg.min_colorfulness:
                raise SkipImage("low_colorfulness", f"colorfulness {cf:.1f} < min_colorfulness={cfg.min_colorfulness}")
        views = crops(rgb, cfg)
        labs = [rgb_uint8_to_lab(c) for c in views]
        return labs, max(roundtrip_error(lab, c) for lab, c in zip(labs, views))
    except SkipImage as skip:
        return None, (skip.code, skip.detail)


def _process_star(args: tuple[SourceImage, DataConfig]) -> Any:
    torch.set_num_threads(1)
    return process_image(*args)


def _results(items: list[SourceImage], cfg: DataConfig) -> Iterator[Any]:
    workers = cfg.workers
    if workers <= 1:
        yield from (process_image(it, cfg) for it in items)
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(_process_star, ((it, cfg) for it in items), chunksize=4)


def roundtrip_error(lab: torch.Tensor, rgb_reference: torch.Tensor) -> int:
    """Max |Δ| (0-255) between sRGB uint8 and its float16 L*a*b* shard value converted back."""
    back = lab_to_rgb_uint8(lab.to(torch.float16).float())
    return int((back.int() - rgb_reference.int()).abs().max())


def prepare(cfg: DataConfig) -> dict[str, Any]:
    """Run the prepare stage; returns the manifest (also written to ``<out>/manifest.json``)."""
    start = time.time()
    out = resolve_path(cfg.out)
    if out.exists():
        shutil.rmtree(out)  # a DVC output is rebuilt whole: no stale shard survives a params change
    sources, classes = list_sources(cfg)
    assignment = assign_splits(((s.group, s.label) for s in sources), cfg.splits, cfg.seed)
    writers = {name: ShardWriter(out / name, cfg.shard_size) for name in SPLITS}
    skipped: list[dict[str, str]] = []
    roundtrip = 0
    for item, (labs, info) in tqdm(zip(sources, _results(sources, cfg)), total=len(sources), desc="prepare", unit="img"):
        if labs is None:
            code, detail = info
            skipped.append({"source": item.id, "reason": code, "detail": detail})
            log.info("skipped %s: %s (%s)", item.id, code, detail)
            continue
        split = assignment[item.group]
        roundtrip = max(roundtrip, info)
        for k, lab in enumerate(labs):
            writers[split].add(lab, item.label, f"{item.id}#{k}" if len(labs) > 1 else item.id)
    for w in writers.values():
        w.flush()
    bytes_per_image = 3 * cfg.size * cfg.size * LAB_DTYPE().itemsize
    manifest = {
        "format": "chromapipe-lab-shards/1",
        "params": to_dict(cfg),
        "classes": classes,
        "n_sources": len(sources),
        "splits": {
            name: {
                "n_images": w.count,
                "n_sources": len({g for g, s in assignment.items() if s == name} - {s["source"] for s in skipped}),
                "shards": w.shards,
            }
            for name, w in writers.items()
        },
        "skipped": skipped,
        "skipped_by_reason": dict(Counter(s["reason"] for s in skipped)),
        "storage": {"dtype": "float16", "layout": "N,3,S,S (L*, a*, b*)", "bytes_per_image": bytes_per_image},
        "lab_roundtrip_max_abs_uint8": roundtrip,
        "seconds": round(time.time() - start, 2),
    }
    if manifest["splits"]["train"]["n_images"] == 0:
        raise RuntimeError(f"prepare: no usable training images out of {len(sources)} sources; skipped: {manifest['skipped_by_reason']}")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    log.info("prepared %s images (%s skipped) into %s", {k: v["n_images"] for k, v in manifest["splits"].items()}, len(skipped), out)
    return manifest
