"""The contract between a colorizer architecture and the shared training, evaluation and inference code.

A :class:`Recipe` owns everything that differs between the papers: the networks, how L and ab are
scaled for them, and the losses. The trainer (``chromapipe.training``) owns everything that does not:
data loading, DDP, optimisers and schedules, the critic/generator step cadence, AMP, checkpoints and
logging. Keeping losses out of the trainer is what lets one Ray Train loop serve every paper.

Conventions every recipe follows:
- A batch is a dict of tensors on the training device: ``L`` (B,1,H,W) CIE L* in [0, 100],
  ``ab`` (B,2,H,W) a*, b* in Lab units (about [-128, 127]), ``label`` (B,) int64 class index or -1
  when the dataset has no classes. :meth:`Recipe.prepare_batch` may add recipe-specific targets.
- A generator's ``forward`` returns a dict with at least ``"ab"`` (the network's own scaling); other
  keys (``"logits"``, ``"class_probs"``, ``"palette"``) carry auxiliary outputs. Dicts pass through DDP.
- Losses are computed in the network's own scaling, so the papers' loss weights mean what they meant.
- :meth:`Recipe.predict` is the one way to colorize: the evaluate stage, validation during training and
  ``chromapipe colorize`` all call it, so a model is scored exactly as it is used.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from chromapipe.tensors import Batch, Prediction

Logs = dict[str, torch.Tensor | float]  # detached 0-dim tensors (no host sync per step) or floats


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside a DDP wrapper (used for the generator-step D call and gradient penalties)."""
    return (
        module.module
        if hasattr(module, "module") and isinstance(module, nn.parallel.DistributedDataParallel)
        else module
    )


def resize_to(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased resize of (B,C,H,W) to ``size`` (square if an int); a no-op at that size."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """Architectures without options."""


class Recipe(ABC):
    """One architecture family: networks + scaling + losses. Instantiated from ``models.<name>`` in params."""

    arch: ClassVar[str]
    Options: ClassVar[type] = NoOptions
    #: True for recipes whose generator predicts a palette and accepts one (``predict(..., palette=…)``);
    #: they implement :meth:`palette_target` and :meth:`reference_palette`.
    has_palette: ClassVar[bool] = False
    #: loss term name -> default weight; params may override weights but not add unknown terms
    default_loss: ClassVar[dict[str, float]] = {}

    def __init__(self, options: Any, loss: dict[str, float], resolution: int) -> None:
        self.options = options
        self.loss = {**self.default_loss, **loss}
        self.resolution = resolution

    # -- networks -----------------------------------------------------------------------------------------
    @abstractmethod
    def build_generator(self) -> nn.Module:
        """The generator (everything needed at inference: for PalGAN, palette generator E + assignment G)."""

    @abstractmethod
    def build_discriminator(self) -> nn.Module:
        """The discriminator / critic (training only)."""

    @property
    def critic_double_backward(self) -> bool:
        """Whether the critic's loss differentiates through the critic twice (a WGAN-GP gradient penalty, declared
        by a ``gp`` loss weight above 0). The trainer asks because a module compiled by ``torch.compile`` cannot
        be differentiated twice; recipes whose ``gp`` weight is unused in some configuration override this."""
        return self.loss.get("gp", 0.0) > 0

    def setup(self, device: torch.device) -> None:  # noqa: B027 (optional hook: the default does nothing)
        """Move frozen helpers (teachers, histogram kernels) to the device. Called once by the trainer."""

    # -- scaling ------------------------------------------------------------------------------------------
    @abstractmethod
    def encode_L(self, L: torch.Tensor) -> torch.Tensor:
        """L* in [0, 100], (B,1,H,W) -> the generator's input."""

    @abstractmethod
    def encode_ab(self, ab: torch.Tensor) -> torch.Tensor:
        """a*b* in Lab units -> the generator's output scaling (the reconstruction target)."""

    @abstractmethod
    def decode_ab(self, out: torch.Tensor) -> torch.Tensor:
        """The generator's ``"ab"`` output -> a*b* in Lab units."""

    # -- training -----------------------------------------------------------------------------------------
    def prepare_batch(self, batch: Batch) -> Batch:
        """Add recipe-specific targets (teacher distributions, palettes) to a batch already on the device."""
        return batch

    def generator_inputs(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Keyword arguments for ``G(**inputs)`` during training (PalGAN adds nothing: E predicts the palette)."""
        return {"L": self.encode_L(batch["L"])}

    @abstractmethod
    def discriminator_loss(
        self, D: nn.Module, batch: Batch, fake: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, Logs]:
        """Loss for one D step. ``D`` may be DDP-wrapped (use :func:`unwrap` for gradient penalties);
        ``fake`` is the generator's output, detached."""

    @abstractmethod
    def generator_loss(self, D: nn.Module, batch: Batch, out: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Logs]:
        """Loss for one G step. ``D`` is the plain (unwrapped) discriminator; ``out`` is ``G(**inputs)``."""

    # -- inference ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, G: nn.Module, L: torch.Tensor, **conditioning: Any) -> Prediction:
        """Colorize L* in [0, 100] (B,1,H,W) at any size: the network sees L resized to the model's
        resolution; its a*b* (Lab units) come back resized to (H, W), to be joined with the full L*.
        ``conditioning``: extra generator inputs (``palette=`` for recipes with :attr:`has_palette`)."""
        out = G(self.encode_L(resize_to(L, self.resolution)), **conditioning)
        prediction = {"ab": resize_to(self.decode_ab(out["ab"]).float(), tuple(L.shape[-2:]))}
        if "palette" in out:
            prediction["palette"] = out["palette"].float()
        return prediction

    def palette_target(self, ab: torch.Tensor) -> torch.Tensor:
        """(B,2,H,W) a*b* in Lab units -> (B, bins) ground-truth palette (recipes with :attr:`has_palette`)."""
        raise NotImplementedError(f"{type(self).__name__} has no palette")

    def reference_palette(self, rgb01: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) sRGB in [0, 1] of a reference photo -> (B, bins) palette for ``predict(..., palette=…)``."""
        raise NotImplementedError(f"{type(self).__name__} has no palette")

    def describe(self) -> dict[str, Any]:
        """What is recorded with a run beyond params: weights sources, teachers, label sources."""
        return {}

    def inference_modules(self, G: nn.Module) -> nn.Module:
        """The part needed at inference (for counting); the whole generator unless a recipe says otherwise."""
        return G

    def training_only(self) -> tuple[str, ...]:
        """Dotted names of generator submodules that only feed a training loss (a classification head):
        generator files leave them out — ChromaGAN's class head is 124 M of its 171 M parameters — and a
        loaded generator has them set to None, which its forward must accept (no ``logits`` then)."""
        return ()
