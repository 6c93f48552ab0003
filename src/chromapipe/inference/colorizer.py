"""The Python API: a trained generator as one object that colorizes photos at their full resolution.

    from chromapipe import Colorizer
    colorizer = Colorizer.load("models:/chromapipe-palgan@champion")   # or a file, a directory, a model name
    colorized = colorizer(Image.open("scan.jpg"))                       # a PIL image, same size, L* kept

Why one object: ``chromapipe colorize``, the MLflow model (``mlflow models serve``) and a notebook must
produce the same pixels from the same photo. So the per-image work — decode, the network's L* input,
``Recipe.predict``, the full-resolution render — lives here once; the command only adds its loop over
files (batching network inputs across files, naming and writing outputs, reporting failures) and the MLflow
model only its request and response encoding.

The network sees L* resized (with antialiasing) to the model's square training resolution and predicts a*b*
there; the result keeps the original L* at full resolution and only borrows the upsampled a*b*
(:mod:`chromapipe.inference.fullres`). On a CUDA device the per-pixel work runs there too
(:func:`uses_device_path`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from chromapipe import devices
from chromapipe.config import MAX_PIXELS, ModelConfig
from chromapipe.inference import fullres
from chromapipe.inference.conditioning import Conditioning, build_conditioning
from chromapipe.inference.io import DecodedImage, ImageLike, as_image, read_image, to_8bit, to_pil
from chromapipe.inference.source import UsageError, load_any, local_source


def uses_device_path(device: torch.device) -> bool:
    """Whether the per-pixel work (decode where nvJPEG applies, network input, render) runs on ``device``:
    only on CUDA, where the host path left the GPU idle for most of a run (reports/benchmarks.md, "Inference
    on a GPU before the device path"); on the CPU the NumPy path, tuned for cache-sized strips in a thread
    pool, is the faster one."""
    return device.type == "cuda"


def resolve_device(name: str | torch.device) -> torch.device:
    try:
        return devices.resolve_device(name)
    except devices.DeviceUnavailable as exc:
        raise UsageError(f"--device {name}: {exc}") from None


class Colorizer:
    """A trained generator on a device, ready to colorize images of any size and mode.

    ``colorizer(image)`` takes a PIL image, an array ((H, W) gray, (H, W, 3) RGB, (H, W, 4) RGBA; uint8,
    uint16 or floats in [0, 1]), a file's path or its bytes, and returns what ``chromapipe colorize`` writes
    for it: the same size, upright, alpha kept, L* preserved. A PIL image, path or bytes gives a PIL image
    (8 bits per channel, ICC profile / EXIF / DPI in its ``info``); an array gives an (H, W, 3|4) array of
    its own integer type (uint16 for 16-bit and float input). ``reference`` (a palette from another photo) and
    ``samples`` (N diverse colorizations, a list) need a PalGAN-family model.

    Building blocks for callers that batch many files (the command): :meth:`decode`, :meth:`network_input`,
    :meth:`predict`, :meth:`render`, :meth:`conditioning`.
    """

    def __init__(
        self,
        recipe: Any,
        G: torch.nn.Module,
        info: dict[str, Any],
        device: torch.device,
        max_pixels: int = MAX_PIXELS,
    ) -> None:
        self.recipe, self.G, self.info, self.device = recipe, G, info, device
        self.max_pixels = max_pixels
        self.on_device = uses_device_path(device)

    @classmethod
    def load(
        cls,
        source: str | os.PathLike[str],
        device: str | torch.device = "cpu",
        *,
        tracking_uri: str | None = None,
        params: str | os.PathLike[str] | None = None,
        max_pixels: int = MAX_PIXELS,
    ) -> Colorizer:
        """Load a generator from ``source``: a generator file (``models/<m>/generator.pt``), a directory
        (``chromapipe export --format safetensors``, an MLflow model, a model's directory), an MLflow URI
        (``runs:/<run id>``: the run's generator; ``models:/chromapipe-<m>@<alias>`` or ``/<version>``: a
        registered version) or a model name of the project's params. ``tracking_uri`` (for MLflow URIs)
        defaults to the project's store; ``params``: the params file (default: the project root's, if any).
        Raises ValueError (:class:`~chromapipe.inference.source.UsageError`) saying what is missing."""
        dev = resolve_device(device)
        with local_source(source, tracking=tracking_uri, params_path=params) as path:
            recipe, G, info = load_any(path, dev)
        return cls(recipe, G, info, dev, max_pixels=max_pixels)

    @classmethod
    def from_path(cls, path: Path, device: str | torch.device = "cpu", max_pixels: int = MAX_PIXELS):
        """From a local generator file or directory (what :func:`~chromapipe.inference.source.load_any` reads)."""
        dev = resolve_device(device)
        recipe, G, info = load_any(Path(path), dev)
        return cls(recipe, G, info, dev, max_pixels=max_pixels)

    # -- what it is ----------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.info["name"]

    @property
    def config(self) -> ModelConfig:
        return self.info["config"]

    @property
    def arch(self) -> str:
        return self.config.arch

    @property
    def resolution(self) -> int:
        return self.recipe.resolution

    @property
    def has_palette(self) -> bool:
        return bool(self.recipe.has_palette)

    def __repr__(self) -> str:
        return f"Colorizer({self.name!r}, arch={self.arch!r}, resolution={self.resolution}, device={self.device})"

    # -- building blocks -----------------------------------------------------------------------------------------
    def conditioning(
        self, reference: ImageLike | None = None, samples: int | None = None, seed: int = 0
    ) -> Conditioning:
        """What each input is colorized with: plain, a reference photo's palette, or ``samples`` draws."""
        if samples is not None and samples < 1:
            raise UsageError("--samples must be >= 1")
        return build_conditioning(
            self.recipe, reference=reference, samples=samples, seed=seed, max_pixels=self.max_pixels, device=self.device
        )

    def decode(self, image: ImageLike) -> DecodedImage:
        """Any image this API takes, decoded upright (raises :class:`~chromapipe.inference.io.InputError`);
        on the device path its pixels are moved (or, for JPEG files, decoded by nvJPEG) to the device."""
        if self.on_device and isinstance(image, (str, os.PathLike)) and Path(image).is_file():
            decoded = read_image(Path(image), self.max_pixels, device=self.device)
        else:
            decoded = as_image(image, self.max_pixels)
        return decoded.to_device(self.device) if self.on_device else decoded

    def network_input(self, image: DecodedImage) -> torch.Tensor:
        """The network's L* (1, R, R), on the pixels' device."""
        return fullres.network_L(image.pixels, self.resolution)

    def predict(self, L: torch.Tensor, conditioning: Conditioning) -> list[torch.Tensor]:
        """``Recipe.predict`` on a batch of network inputs (B, 1, R, R): one (B, 2, R, R) a*b* per output tag."""
        L = L.to(self.device)
        with torch.inference_mode():
            kwargs = conditioning.batch_kwargs(self.recipe, self.G, L)
            return [self.recipe.predict(self.G, L, **kw)["ab"] for kw in kwargs]

    def render(self, image: DecodedImage, ab: torch.Tensor, pad: bool = False) -> np.ndarray:
        """The full-resolution result (H, W, 3|4) in the input's bit depth, from one image's (2, R, R) a*b*."""
        return fullres.render(image.pixels, ab, image.alpha, pad=pad)

    def colorize(self, image: DecodedImage, conditioning: Conditioning) -> list[np.ndarray]:
        """One decoded image, every output of ``conditioning``: (H, W, 3|4) arrays."""
        preds = self.predict(self.network_input(image)[None], conditioning)
        return [self.render(image, ab[0]) for ab in preds]

    # -- the one call ----------------------------------------------------------------------------------------------
    def __call__(
        self, image: ImageLike, reference: ImageLike | None = None, samples: int | None = None, seed: int = 0
    ) -> Image.Image | np.ndarray | list[Image.Image] | list[np.ndarray]:
        """Colorize one image (see the class docstring); a list of ``samples`` results when asked for."""
        decoded = self.decode(image)
        outputs = self.colorize(decoded, self.conditioning(reference, samples, seed))
        if isinstance(image, np.ndarray):
            results: list[Any] = outputs
        else:
            has_alpha = decoded.alpha is not None
            results = [to_pil(to_8bit(out), has_alpha, decoded.metadata) for out in outputs]
        return results if samples is not None else results[0]
