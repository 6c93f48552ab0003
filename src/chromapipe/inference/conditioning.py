"""What the generator is conditioned on besides L*: nothing, a reference photo's palette, or sampled palettes.

Each output of one input file has a file-name tag and extra keyword arguments for ``recipe.predict``:
plain colorization is one untagged output; ``--samples N`` gives N outputs tagged ``_sample1`` …
``_sampleN``. Only recipes with ``has_palette`` (the PalGAN family) accept palettes; for the others the
options are refused up front instead of being silently ignored.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import torch

from chromapipe.inference.fullres import resized_rgb01
from chromapipe.inference.io import ImageLike, InputError, as_image
from chromapipe.inference.source import UsageError


@dataclasses.dataclass
class Conditioning:
    """The outputs made per input file: ``tags`` (appended to the output stem) and, per network batch,
    the extra ``recipe.predict`` keyword arguments for each tag."""

    tags: list[str]
    batch_kwargs: Callable[[Any, torch.nn.Module, torch.Tensor], list[dict[str, Any]]]  # (recipe, G, L) -> per tag


def reference_palette(recipe: Any, reference: ImageLike, max_pixels: int, device: torch.device) -> torch.Tensor:
    """The (1, 256) palette of a reference photo (a path, bytes, a PIL image or an array), computed at the
    model's resolution (what the palette code saw in training, and it keeps a 24 MP reference from costing
    gigabytes of temporaries)."""
    try:
        image = as_image(reference, max_pixels)
    except (InputError, OSError) as exc:
        named = reference if isinstance(reference, (str, os.PathLike)) else f"({type(reference).__name__})"
        raise UsageError(f"--reference {named}: {exc}") from None
    rgb = resized_rgb01(image.pixels, recipe.resolution)
    with torch.inference_mode():
        return recipe.reference_palette(rgb.to(device)).float()


def predicted_palette(recipe: Any, G: torch.nn.Module, L: torch.Tensor) -> torch.Tensor:
    """The palette the model itself predicts for L (PalGAN's E), from the same ``predict`` call as any use."""
    return recipe.predict(G, L)["palette"]


def sampled(
    base: Callable[[Any, torch.nn.Module, torch.Tensor], torch.Tensor], n: int, seed: int
) -> Callable[..., list[dict[str, Any]]]:
    """N palettes per image drawn around ``base`` with :func:`chromapipe.models.palette.sample_palettes`
    (Dirichlet draws around the palette; see its docstring). Each image's draws use a generator seeded
    with ``seed`` alone, so a file gets the same samples whatever batch it lands in."""
    from chromapipe.models.palette import sample_palettes

    def kwargs(recipe: Any, G: torch.nn.Module, L: torch.Tensor) -> list[dict[str, Any]]:
        h = base(recipe, G, L)  # (B, 256)
        per_image = [sample_palettes(h[i], n, generator=torch.Generator().manual_seed(seed)) for i in range(h.shape[0])]
        draws = torch.stack(per_image, dim=1)  # (n, B, 256)
        return [{"palette": draws[k]} for k in range(n)]

    return kwargs


def build_conditioning(
    recipe: Any, *, reference: ImageLike | None, samples: int | None, seed: int, max_pixels: int, device: torch.device
) -> Conditioning:
    """Plain colorization, a reference's palette, or N samples (around the reference's palette if given,
    else around the model's own predicted palette)."""
    if reference is None and samples is None:
        return Conditioning([""], lambda recipe, G, L: [{}])
    if not recipe.has_palette:
        opt = "--reference" if reference is not None else "--samples"
        raise UsageError(
            f"{opt} needs a PalGAN-family model (a recipe with has_palette); this checkpoint is {type(recipe).__name__}"
        )
    ref = reference_palette(recipe, reference, max_pixels, device) if reference is not None else None
    if samples is None:
        return Conditioning([""], lambda recipe, G, L: [{"palette": ref.expand(L.shape[0], -1)}])
    base = (lambda recipe, G, L: ref.expand(L.shape[0], -1)) if ref is not None else predicted_palette
    return Conditioning([f"_sample{k}" for k in range(1, samples + 1)], sampled(base, samples, seed))
