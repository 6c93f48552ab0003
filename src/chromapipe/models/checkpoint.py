"""The trained-generator file: state dict + the model's config, loadable without unpickling code.

``torch.load(weights_only=True)`` admits only tensors and plain containers, so a checkpoint from an
untrusted source cannot run code. Everything needed to rebuild the network (the ModelConfig as a dict)
travels inside the file, so ``colorize --checkpoint`` needs no params.yaml.
"""

from __future__ import annotations

import logging
from itertools import chain
from pathlib import Path
from typing import Any

import torch
from torch import nn

from chromapipe.config import ModelConfig, build_dataclass, to_dict
from chromapipe.models.base import Recipe, unwrap
from chromapipe.models.registry import build_recipe

FORMAT = "chromapipe-generator/1"

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A generator file is missing, unreadable or not a chromapipe generator."""


def _without_training_only(state: dict[str, torch.Tensor], names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """``state`` without the entries of the named submodules (``branch.head.*``)."""
    return {k: v for k, v in state.items() if not any(k.startswith(name + ".") for name in names)}


def _drop_training_only(G: nn.Module, names: tuple[str, ...]) -> None:
    """Set each named submodule (``branch.head``) to None: the generator a file rebuilds."""
    for name in names:
        parent, _, attr = name.rpartition(".")
        setattr(G.get_submodule(parent) if parent else G, attr, None)


def save_generator(path: Path, name: str, cfg: ModelConfig, G: nn.Module, meta: dict[str, Any] | None = None) -> None:
    """Write the generator's weights (without :meth:`Recipe.training_only` parts) and its config."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().cpu()
        for k, v in _without_training_only(unwrap(G).state_dict(), build_recipe(cfg).training_only()).items()
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format": FORMAT, "name": name, "config": to_dict(cfg), "state_dict": state, "meta": meta or {}}, tmp)
    tmp.replace(path)  # atomic: an interrupted save never leaves a half-written generator


def _config(blob: dict[str, Any], path: Path) -> ModelConfig:
    return config_from_dict(blob["config"], f"{path}:config")


def config_from_dict(raw: dict[str, Any], where: str) -> ModelConfig:
    """The ModelConfig a generator file (or an exported ``config.json``) carries; ``where`` names it in errors."""
    raw = dict(raw)
    raw["betas"] = tuple(raw["betas"])
    return build_dataclass(ModelConfig, raw, where)


def build_from_state(cfg: ModelConfig, state: dict[str, torch.Tensor], where: str) -> tuple[Recipe, nn.Module]:
    """(recipe, generator) with ``state``'s weights: the tensors adopted where the network can be built on the
    meta device (one copy of the weights), else a regular build and copy. Shared by every generator format."""
    blob = {"state_dict": state}
    try:
        return _load_mapped(blob, cfg)
    except Exception as exc:  # noqa: BLE001 - the regular path reports real errors
        log.debug("memory-mapped load of %s failed (%s); building normally", where, exc)
        return _load_copied(blob, cfg)


def _load_mapped(blob: dict[str, Any], cfg: ModelConfig) -> tuple[Recipe, nn.Module]:
    """Build on the ``meta`` device (no storage, no pretrained-weight loading) and adopt the file's
    memory-mapped tensors: one copy of the weights instead of two (random init + loaded)."""
    recipe = build_recipe(cfg)
    with torch.device("meta"):
        G = recipe.build_generator()
    _load_inference_state(G, recipe, blob, assign=True)
    if any(t.is_meta for t in chain(G.parameters(), G.buffers())):
        raise RuntimeError("the generator has tensors outside its state dict")
    return recipe, G


def _load_copied(blob: dict[str, Any], cfg: ModelConfig) -> tuple[Recipe, nn.Module]:
    recipe = build_recipe(cfg)
    G = recipe.build_generator()
    _load_inference_state(G, recipe, blob, assign=False)
    return recipe, G


def _load_inference_state(G: nn.Module, recipe: Recipe, blob: dict[str, Any], assign: bool) -> None:
    """Drop ``G``'s training-only parts, then load the file's weights strictly (the entries of those parts
    are ignored: files written before they were left out have them)."""
    names = recipe.training_only()
    _drop_training_only(G, names)
    G.load_state_dict(_without_training_only(blob["state_dict"], names), assign=assign)


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> tuple[Recipe, nn.Module, dict[str, Any]]:
    """Rebuild (recipe, generator in eval mode, info) from a generator file.

    The file is memory-mapped, so a 171 M-parameter generator costs one copy of its weights at the peak;
    a network that cannot be built on the meta device falls back to a regular build and copy.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: generator checkpoint not found (train it with `dvc repro` first)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise CheckpointError(f"{path}: not a loadable chromapipe checkpoint ({exc})") from exc
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a chromapipe generator file (expected format {FORMAT})")
    cfg = _config(blob, path)
    recipe, G = build_from_state(cfg, blob["state_dict"], str(path))
    G.to(device).eval()
    return recipe, G, {"name": blob["name"], "config": cfg, "meta": blob.get("meta", {})}
