"""Architecture name -> recipe class, and building a recipe from ``models.<name>`` in params."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from chromapipe.schema import ConfigError, build_dataclass

if TYPE_CHECKING:
    from chromapipe.config import ModelConfig, Params
    from chromapipe.models.base import Recipe

# arch -> "module:Class"; imported lazily so `chromapipe --help` does not pay for every model
ARCHITECTURES: dict[str, str] = {
    "pix2pix": "chromapipe.models.pix2pix:Pix2PixRecipe",
    "chromagan": "chromapipe.models.chromagan:ChromaGANRecipe",
    "palgan": "chromapipe.models.palgan:PalGANRecipe",
}


def recipe_class(arch: str) -> type[Recipe]:
    """The recipe for a built-in arch name, or for an import path ``package.module:Class`` (your own model)."""
    target = ARCHITECTURES.get(arch, arch if ":" in arch else None)
    if target is None:
        raise ConfigError(
            f"arch: {arch!r} is not allowed; expected one of {', '.join(map(repr, ARCHITECTURES))} "
            "or 'module:RecipeClass'"
        )
    module_name, cls_name = target.split(":", 1)
    try:
        return getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"arch: {arch!r} cannot be imported ({exc})") from None


def validate_model(name: str, cfg: ModelConfig) -> None:
    """Check a model's arch, options and loss terms against its recipe (raises ConfigError)."""
    key = f"models.{name}"
    try:
        cls = recipe_class(cfg.arch)
    except ConfigError as exc:
        raise ConfigError(f"{key}.{exc}") from None
    options = build_dataclass(cls.Options, cfg.options, f"{key}.options")
    unknown = sorted(set(cfg.loss) - set(cls.default_loss))
    if unknown:
        raise ConfigError(f"{key}.loss.{unknown[0]}: unknown loss term; allowed: {', '.join(cls.default_loss)}")
    bad = {k: v for k, v in cfg.loss.items() if v < 0}
    if bad:
        raise ConfigError(f"{key}.loss.{next(iter(bad))}: loss weights must be >= 0")
    try:  # cross-field rules a recipe checks itself (resolution limits, options that need each other)
        cls(options=options, loss=dict(cfg.loss), resolution=cfg.resolution)
    except (ConfigError, ValueError) as exc:
        raise ConfigError(f"{key}: {exc}") from None


def validate_models(params: Params) -> Params:
    """Check every ``models.<name>`` against its recipe; returns ``params`` so loaders can chain it.

    ``config.load_params`` validates everything that does not need the models (it stays torch-free);
    the stage entry points and commands call this right after it."""
    for name, cfg in params.models.items():
        validate_model(name, cfg)
    return params


def build_recipe(cfg: ModelConfig) -> Recipe:
    cls = recipe_class(cfg.arch)
    options = build_dataclass(cls.Options, cfg.options, "options")
    return cls(options=options, loss=dict(cfg.loss), resolution=cfg.resolution)


def parameter_counts(name: str, cfg: ModelConfig) -> dict[str, object]:
    """Parameter counts of one configured model (``chromapipe models``): the networks are built on PyTorch's
    ``meta`` device (shapes only, no memory, no weight initialisation)."""
    import torch

    from chromapipe.config import to_dict
    from chromapipe.models.base import count_parameters

    recipe = build_recipe(cfg)
    with torch.device("meta"):
        G = recipe.build_generator()
        D = recipe.build_discriminator()
        inference = recipe.inference_modules(G)
    return {
        "model": name,
        "arch": cfg.arch,
        "resolution": cfg.resolution,
        "generator": count_parameters(G),
        "discriminator": count_parameters(D),
        "inference": count_parameters(inference),
        "options": to_dict(recipe.options),
        "loss": dict(recipe.loss),
    }
