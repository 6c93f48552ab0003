"""A deliberately small recipe for exercising the shared machinery (trainer, Ray, DVC, MLflow) quickly.

It follows the same contract as the papers' recipes; parameter counts and losses mean nothing.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from chromapipe.color import rgb_to_lab
from chromapipe.models.base import Recipe
from chromapipe.models.randomness import SampleDropout


class TinyGenerator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 3, padding=1))

    def forward(self, L: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"ab": torch.tanh(self.net(L) * 3.0)}  # x3: visibly colored output even at random init


def ab_histogram(rgb01: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) sRGB in [0, 1] -> (B, 256) normalised 16x16 histogram over a*, b* in [-128, 128)."""
    ab = rgb_to_lab(rgb01)[:, 1:].clamp(-128, 127.99)
    idx = ((ab[:, 0] + 128) // 16).long() * 16 + ((ab[:, 1] + 128) // 16).long()
    hist = torch.zeros(rgb01.shape[0], 256, device=rgb01.device).scatter_add_(
        1, idx.flatten(1), torch.ones(idx.flatten(1).shape, device=rgb01.device)
    )
    return hist / hist.sum(1, keepdim=True)


_BIN_CENTRES = torch.stack(
    torch.meshgrid(torch.arange(16) * 16.0 - 120, torch.arange(16) * 16.0 - 120, indexing="ij")
).reshape(2, 256)


class TinyPaletteGenerator(TinyGenerator):
    """Without a palette: the tiny conv net (and a fixed "predicted" palette, as PalGAN's E would give).
    With one: the palette's mean a*b* plus a little of the net's detail."""

    def __init__(self) -> None:
        super().__init__()
        self.palette_logits = nn.Parameter(torch.randn(256) * 3)

    def forward(self, L: torch.Tensor, palette: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        ab = super().forward(L)["ab"]
        predicted = torch.softmax(self.palette_logits, 0).expand(L.shape[0], -1)
        if palette is not None:
            mean = (palette @ _BIN_CENTRES.T.to(palette.device) / 128.0).view(-1, 2, 1, 1)
            ab = (mean + 0.05 * ab).clamp(-1, 1)
        return {"ab": ab, "palette": predicted}


class TinyRecipe(Recipe):
    arch = "tests.tiny_recipe:TinyRecipe"
    default_loss = {"adv": 1.0, "l1": 10.0}

    def build_generator(self) -> nn.Module:
        return TinyGenerator()

    def build_discriminator(self) -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, 8, 4, stride=2, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(8, 1, 3, padding=1))

    def encode_L(self, L: torch.Tensor) -> torch.Tensor:
        return L / 50.0 - 1.0

    def encode_ab(self, ab: torch.Tensor) -> torch.Tensor:
        return ab / 128.0

    def decode_ab(self, out: torch.Tensor) -> torch.Tensor:
        return out * 128.0

    def discriminator_loss(self, D, batch, fake):
        x = self.encode_L(batch["L"])
        real = D(torch.cat([x, self.encode_ab(batch["ab"])], 1))
        fake_logits = D(torch.cat([x, fake["ab"]], 1))
        loss = F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + F.binary_cross_entropy_with_logits(
            fake_logits, torch.zeros_like(fake_logits)
        )
        return loss, {"d_loss": loss.detach()}

    def generator_loss(self, D, batch, out):
        x = self.encode_L(batch["L"])
        logits = D(torch.cat([x, out["ab"]], 1))
        adv = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        l1 = F.l1_loss(out["ab"], self.encode_ab(batch["ab"]))
        return self.loss["adv"] * adv + self.loss["l1"] * l1, {"g_adv": adv.detach(), "g_l1": l1.detach()}


class TinyPaletteRecipe(TinyRecipe):
    """The tiny recipe with a palette input, as the PalGAN family has (for colorize's palette options)."""

    arch = "tests.tiny_recipe:TinyPaletteRecipe"
    has_palette = True

    def build_generator(self) -> nn.Module:
        return TinyPaletteGenerator()

    def palette_target(self, ab: torch.Tensor) -> torch.Tensor:
        from chromapipe.color import join_lab, lab_to_rgb

        return ab_histogram(lab_to_rgb(join_lab(torch.full_like(ab[:, :1], 50.0), ab)))

    def reference_palette(self, rgb01: torch.Tensor) -> torch.Tensor:
        return ab_histogram(rgb01)


class TinyNormGenerator(nn.Module):
    """The tiny generator with what makes data-parallel training and resuming hard: BatchNorm (statistics over
    the batch) and dropout (per-sample random masks)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            SampleDropout(0.5, channelwise=True),
            nn.ReLU(),
            nn.Conv2d(8, 2, 3, padding=1),
        )

    def forward(self, L: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"ab": torch.tanh(self.net(L) * 3.0)}


class TinyNormRecipe(TinyRecipe):
    """The tiny recipe with BatchNorm in G and D and dropout in G (for world-size invariance and exact resume)."""

    arch = "tests.tiny_recipe:TinyNormRecipe"

    def build_generator(self) -> nn.Module:
        return TinyNormGenerator()

    def build_discriminator(self) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(3, 8, 4, stride=2, padding=1), nn.BatchNorm2d(8), nn.LeakyReLU(0.2), nn.Conv2d(8, 1, 3, padding=1)
        )


class FlakyRecipe(TinyNormRecipe):
    """Kills its worker process once, mid-training, to exercise Ray's restart from the last checkpoint.

    The crash happens on rank 1 at its ``crash_after``-th generator step, only while the marker file named by the
    option ``crash_marker`` does not exist yet (it is created just before dying): a run whose marker exists
    trains exactly as :class:`TinyNormRecipe` does. An option, not an environment
    variable: a Ray instance started before the test would not pass the variable to its workers. Ray Train
    commits a checkpoint only once its controller has polled every rank's report (every 2 s by default): a
    worker that dies within that window loses the newest checkpoint and restarts from the one before. The worker
    therefore waits ``COMMIT_WAIT_S`` before dying, so the restart must resume from step 4, not from scratch.
    """

    @dataclasses.dataclass(frozen=True)
    class Options:
        crash_marker: str  # the file that says the worker already crashed once
        crash_after: int = 5  # generator steps before the crash

    arch = "tests.tiny_recipe:FlakyRecipe"
    COMMIT_WAIT_S = 6.0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0

    def generator_loss(self, D, batch, out):
        import os
        import time

        import ray.train

        self.calls += 1
        marker = Path(self.options.crash_marker)
        if (
            self.calls == self.options.crash_after
            and ray.train.get_context().get_world_rank() == 1
            and not marker.exists()
        ):
            time.sleep(self.COMMIT_WAIT_S)
            marker.write_text("crashed once")
            os._exit(1)
        return super().generator_loss(D, batch, out)
