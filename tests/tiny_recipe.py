"""A deliberately small recipe for exercising the shared machinery (trainer, Ray, DVC, MLflow) quickly.

It follows the same contract as the papers' recipes; parameter counts and losses mean nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from chromapipe.models.base import Recipe


class TinyGenerator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 3, padding=1), nn.Tanh())

    def forward(self, L: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"ab": self.net(L)}


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
        loss = F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        return loss, {"d_loss": loss.item()}

    def generator_loss(self, D, batch, out):
        x = self.encode_L(batch["L"])
        logits = D(torch.cat([x, out["ab"]], 1))
        adv = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        l1 = F.l1_loss(out["ab"], self.encode_ab(batch["ab"]))
        return self.loss["adv"] * adv + self.loss["l1"] * l1, {"g_adv": adv.item(), "g_l1": l1.item()}


class FlakyRecipe(TinyRecipe):
    """Kills its worker process once, mid-training, to exercise Ray's restart from the last checkpoint.

    The crash happens on rank 1 after ``CRASH_AFTER`` generator steps, only while the marker file named by
    ``CHROMAPIPE_TEST_CRASH_MARKER`` does not exist yet (it is created just before dying). Ray Train commits
    a checkpoint only once its controller has polled every rank's report (every 2 s by default): a worker
    that dies within that window loses the newest checkpoint and restarts from the one before. The worker
    therefore waits ``COMMIT_WAIT_S`` before dying, so the restart must resume from step 4, not from scratch.
    """

    arch = "tests.tiny_recipe:FlakyRecipe"
    CRASH_AFTER = 5
    COMMIT_WAIT_S = 6.0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0

    def generator_loss(self, D, batch, out):
        import os
        import time
        from pathlib import Path

        import ray.train

        self.calls += 1
        marker = Path(os.environ["CHROMAPIPE_TEST_CRASH_MARKER"])
        if self.calls == self.CRASH_AFTER and ray.train.get_context().get_world_rank() == 1 and not marker.exists():
            time.sleep(self.COMMIT_WAIT_S)
            marker.write_text("crashed once")
            os._exit(1)
        return super().generator_loss(D, batch, out)
