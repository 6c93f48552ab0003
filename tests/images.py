"""Synthetic test photos shared by the colorize, API, export and serving tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth RGB scene with noise: realistic enough for JPEG, varied enough for every L* value."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    chans = [0.5 + 0.45 * np.sin(x / w * 6 + c * 2) * np.cos(y / h * 4 + c) for c in range(3)]
    img = np.stack(chans, -1) * 255 + rng.normal(0, 6, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def write_command_inputs(directory: Path) -> np.ndarray:
    """One file of each kind ``chromapipe colorize`` reads into ``directory`` (RGB, gray, RGBA and 16-bit gray
    PNGs) and returns the RGB photo they are made from; the callers add their own EXIF-rotated JPEG."""
    directory.mkdir(parents=True, exist_ok=True)
    rgb = photo(45, 70)
    Image.fromarray(rgb).save(directory / "rgb.png")
    Image.fromarray(rgb[..., 1]).save(directory / "gray.png")
    Image.fromarray(np.dstack([rgb, rgb[..., 0]]), "RGBA").save(directory / "rgba.png")
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257 + 100).save(directory / "gray16.png")
    return rgb
