"""The portable generator: ``model.safetensors`` + ``config.json``, readable without this project's MLflow
store, its params or pickle.

Why a second format beside the generator file (:mod:`chromapipe.models.checkpoint`): that file is a torch
pickle (loaded with ``weights_only``, but still a torch-only container). safetensors is a plain header + raw
tensors that any framework reads and that cannot carry code; the JSON beside it says what network the weights
belong to (the ModelConfig), where they came from (run, steps, provenance) and how a photo becomes the
network's input. ``chromapipe export --format safetensors`` writes one; ``Colorizer.load(directory)`` reads
it in a fresh directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from chromapipe.config import ModelConfig, to_dict
from chromapipe.models.base import Recipe
from chromapipe.models.checkpoint import CheckpointError, build_from_state, config_from_dict

FORMAT = "chromapipe-portable/1"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def is_portable(directory: Path) -> bool:
    """Whether ``directory`` holds a portable generator (its config names this format)."""
    config = directory / CONFIG_FILE
    if not (directory / WEIGHTS_FILE).is_file() or not config.is_file():
        return False
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError):
        return False


def save_portable(
    directory: Path, name: str, cfg: ModelConfig, state: dict[str, torch.Tensor], extra: dict[str, Any]
) -> Path:
    """Write ``state`` (the generator's inference weights) and its config into ``directory``; ``extra``: more
    JSON-ready facts for ``config.json`` (meta, preprocessing). Returns the weights file."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / WEIGHTS_FILE
    # safetensors stores each tensor's own bytes: contiguous, and no two names sharing storage
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in state.items()}, str(weights), {"format": FORMAT})
    config = {"format": FORMAT, "name": name, "config": to_dict(cfg), **extra}
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=1, default=str), encoding="utf-8")
    return weights


def load_portable(directory: Path, device: str | torch.device = "cpu") -> tuple[Recipe, nn.Module, dict[str, Any]]:
    """(recipe, generator in eval mode, info) from a portable directory, as ``load_generator`` gives them."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
        state = load_file(str(directory / WEIGHTS_FILE))
    except (OSError, ValueError, SafetensorError) as exc:
        raise CheckpointError(f"{directory}: not a readable {FORMAT} export ({exc})") from exc
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{directory / CONFIG_FILE}: not a {FORMAT} config")
    for name in list(state):
        # safetensors places tensors at 8-byte offsets; torch's allocator (and torch.save's records) at 64.
        # CPU matrix kernels take another summation order for unaligned operands, so an unaligned copy of the
        # same weights predicted one 8-bit code differently on ~3e-5 of a PalGAN photo's values; re-homed,
        # the export colorizes bit for bit as the generator file does. One tensor at a time: no second copy.
        state[name] = state[name].clone()
    cfg = config_from_dict(config["config"], f"{directory / CONFIG_FILE}:config")
    recipe, G = build_from_state(cfg, state, str(directory))
    G.to(device).eval()
    return recipe, G, {"name": config["name"], "config": cfg, "meta": config.get("meta", {})}
