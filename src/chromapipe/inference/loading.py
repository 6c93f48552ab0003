"""Loading a generator file for inference without holding its weights twice.

``chromapipe.models.checkpoint.load_generator`` builds the network (randomly initialised: one full copy
of the weights) and then copies the loaded state dict into it (a second copy). For ChromaGAN's 171 M
parameter generator that is ~1.4 GB at the peak — most of the 2 GB that colorizing a 24 MP photo may
use. Here the file is memory-mapped and the network is built on the ``meta`` device (no storage), then
the mapped tensors are assigned as its parameters: one copy, paged in from the file as used.

Anything unusual (a module that creates real tensors outside its state dict, an old file that cannot be
mapped) falls back to the regular loader, so this is an optimisation, never a second format.
"""

from __future__ import annotations

import logging
from itertools import chain
from pathlib import Path
from typing import Any

import torch
from torch import nn

from chromapipe.config import ModelConfig, build_dataclass
from chromapipe.models.base import Recipe
from chromapipe.models.checkpoint import FORMAT, CheckpointError, load_generator
from chromapipe.models.registry import build_recipe

log = logging.getLogger(__name__)


def _lean(path: Path, device: torch.device) -> tuple[Recipe, nn.Module, dict[str, Any]]:
    blob = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a chromapipe generator file (expected format {FORMAT})")
    raw = dict(blob["config"])
    raw["betas"] = tuple(raw["betas"])
    cfg = build_dataclass(ModelConfig, raw, f"{path}:config")
    recipe = build_recipe(cfg)
    with torch.device("meta"):
        G = recipe.build_generator()
    G.load_state_dict(blob["state_dict"], assign=True)
    if any(t.is_meta for t in chain(G.parameters(), G.buffers())):
        raise RuntimeError("the generator has tensors outside its state dict")
    G.to(device).eval()
    return recipe, G, {"name": blob["name"], "config": cfg, "meta": blob.get("meta", {})}


def load_for_inference(path: str | Path, device: torch.device | str = "cpu") -> tuple[Recipe, nn.Module, dict[str, Any]]:
    """Same result as :func:`chromapipe.models.checkpoint.load_generator`, at about half its peak memory."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: generator checkpoint not found (train it with `dvc repro` first)")
    try:
        return _lean(path, torch.device(device))
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - fall back to the plain loader, which reports real errors
        log.debug("memory-mapped load of %s failed (%s); using the regular loader", path, exc)
        return load_generator(path, device)
