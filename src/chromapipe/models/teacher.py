"""A frozen ImageNet classifier used as a semantic teacher by the pix2pix and ChromaGAN recipes.

ChromaGAN (Vitoria et al. 2020, §3.1) distils the class distribution of an ImageNet VGG16 run on the gray
image tiled to (L, L, L) (docs/papers.md#chromagan-losses). Two teachers exist: ``vgg16`` — torchvision's
ImageNet VGG16 with its classifier, the paper's network (its weights file, ``vgg16-397923af.pth``, is not in
any package: ``chromapipe weights fetch --allow-download`` or a copy in the weights cache provides it) — and
``efficientnet_lite0``, another 1000-class ImageNet classifier shipped inside a registry package, which stands
in when VGG16's weights are not on the machine (``auto``; the recipe records the stand-in as its own choice,
not the paper's). The pix2pix recipe uses the same networks to make pseudo scene labels for datasets without
classes.

Weights come from the pinned resolver (:mod:`chromapipe.weights`); :attr:`ImageNetTeacher.provenance`
records which file. A teacher without weights would produce meaningless targets, so it is an error, never a
silent random init.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from chromapipe.weights import vgg16_classifier_present, vgg16_classifier_state_dict
from chromapipe.weights.effnet import PREPROCESSING, efficientnet_lite0, lite0_input

TEACHERS = ("efficientnet_lite0", "vgg16")
TeacherChoice = Literal["auto", "vgg16", "efficientnet_lite0"]

#: torchvision's ImageNet input normalisation (what its VGG16 weights were trained with)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG16_PREPROCESSING = (
    "sRGB [0,1] -> bilinear antialiased resize to 224x224 -> (x - ImageNet mean) / ImageNet std (torchvision)"
)
NO_VGG16 = (
    "VGG16's classifier weights (vgg16-397923af.pth) are not in the weights cache or the torch hub cache "
    "(`chromapipe weights status`)"
)


def resolve_teacher(choice: str) -> tuple[str, str | None]:
    """(the teacher network to build, why it is not the requested one or None). ``auto``: the paper's VGG16 when
    its weights are on this machine, else EfficientNet-Lite0 — decided on the machine that builds the teacher,
    so every node of a cluster needs the same weights cache."""
    if choice != "auto":
        if choice not in TEACHERS:
            raise ValueError(f"teacher {choice!r} is not available; expected one of auto, {', '.join(TEACHERS)}")
        return choice, None
    if vgg16_classifier_present():
        return "vgg16", None
    return "efficientnet_lite0", NO_VGG16


def _vgg16() -> tuple[nn.Module, dict[str, Any]]:
    """torchvision's VGG16 architecture with the pinned ImageNet weights, frozen."""
    from torchvision.models import vgg16

    state, provenance = vgg16_classifier_state_dict()
    with torch.device("meta"):  # no random init of 138 M parameters that the weights replace at once
        net = vgg16(weights=None)
    net.load_state_dict(state, strict=True, assign=True)
    net.eval().requires_grad_(False)
    return net, provenance


def _vgg16_input(rgb01: torch.Tensor) -> torch.Tensor:
    x = rgb01.float()
    if tuple(x.shape[-2:]) != (224, 224):
        x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class ImageNetTeacher(nn.Module):
    """A frozen ImageNet classifier: sRGB in [0, 1] at any size -> class probabilities (B, 1000).

    ``efficientnet_lite0``: preprocessing follows the model's TFLite origin — resize to 224², then
    (x - 127) / 128 on 0-255 RGB (checked: skimage's chelsea -> tabby-cat classes 281/282/285, coffee ->
    espresso 967). ``vgg16``: torchvision's normalisation at 224².
    """

    def __init__(self, name: str = "efficientnet_lite0") -> None:
        super().__init__()
        if name not in TEACHERS:
            raise ValueError(f"teacher {name!r} is not available; expected one of {TEACHERS}")
        self.name = name
        if name == "vgg16":
            self.net, prov = _vgg16()
            self.provenance: dict[str, Any] = {**prov, "network": "vgg16", "input": VGG16_PREPROCESSING}
        else:
            self.net, prov = efficientnet_lite0()
            self.provenance = {**prov, "network": "efficientnet_lite0", "input": f"sRGB [0,1] x 255 -> {PREPROCESSING}"}

    def train(self, mode: bool = True) -> ImageNetTeacher:
        """Always eval: batch statistics and dropout of a teacher must not change with the trainer's mode."""
        return super().train(False)

    def preprocess(self, rgb01: torch.Tensor) -> torch.Tensor:
        return _vgg16_input(rgb01) if self.name == "vgg16" else lite0_input(rgb01.float() * 255.0)

    @torch.no_grad()
    def forward(self, rgb01: torch.Tensor) -> torch.Tensor:
        if rgb01.dim() != 4 or rgb01.shape[1] != 3:
            raise ValueError(f"teacher expects (B, 3, H, W) sRGB in [0, 1], got {tuple(rgb01.shape)}")
        with torch.autocast(device_type=rgb01.device.type, enabled=False):
            logits = self.net(self.preprocess(rgb01))
        return logits.float().softmax(dim=-1)
