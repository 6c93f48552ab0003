"""What the generator is conditioned on besides L*: nothing, a reference photo's palette, or sampled palettes.

Each output of one input file is a :class:`Variant`: a file-name tag and the extra keyword arguments for
``recipe.colorize``. Plain colorization is one untagged variant; ``--samples N`` gives N tagged ones.
Only recipes with ``reference_palette`` (the PalGAN family) accept palettes; for the others the options
are refused up front instead of being silently ignored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from chromapipe.inference.fullres import resized_rgb01
from chromapipe.inference.io import InputError, read_image
from chromapipe.inference.source import UsageError

Kwargs = Callable[[torch.Tensor], dict[str, Any]]


@dataclasses.dataclass
class Variant:
    tag: str  # appended to the output stem ("" or "_sample<k>")
    kwargs: Kwargs  # network input L (B, 1, R, R) on the device -> extra colorize() arguments


def _plain(_: torch.Tensor) -> dict[str, Any]:
    return {}


def supports_palettes(recipe: Any) -> bool:
    return callable(getattr(recipe, "reference_palette", None))


def reference_palette(recipe: Any, path: str, max_pixels: int, device: torch.device) -> torch.Tensor:
    """The (1, P) palette of a reference photo, computed at the model's resolution (what the palette
    code saw in training, and it keeps a 24 MP reference from costing gigabytes of histogram kernels)."""
    try:
        image = read_image(Path(path), max_pixels)
    except (InputError, OSError) as exc:
        raise UsageError(f"--reference {path}: {exc}") from None
    rgb = resized_rgb01(image.pixels, recipe.resolution)
    with torch.inference_mode():
        return recipe.reference_palette(rgb.to(device)).float()


def build_variants(recipe: Any, G: torch.nn.Module, *, reference: str | None, samples: int | None, seed: int, max_pixels: int, device: torch.device) -> list[Variant]:
    if reference is None and samples is None:
        return [Variant("", _plain)]
    arch = type(recipe).__name__
    if not supports_palettes(recipe):
        opt = "--reference" if reference is not None else "--samples"
        raise UsageError(f"{opt} needs a PalGAN-family model (a recipe with reference_palette); this checkpoint is {arch}")
    if reference is not None and samples is not None:
        raise UsageError("use either --reference or --samples, not both")
    if reference is not None:
        pal = reference_palette(recipe, reference, max_pixels, device)
        return [Variant("", lambda L: {"palette": pal.expand(L.shape[0], -1)})]
    return sample_variants(recipe, G, samples or 1, seed)


def sample_variants(recipe: Any, G: torch.nn.Module, n: int, seed: int) -> list[Variant]:
    """N diverse colorizations: see :mod:`chromapipe.models.palette` for how palettes are sampled."""
    raise UsageError("--samples: the palette sampling function is not available yet")
