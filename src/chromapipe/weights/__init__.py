"""Pretrained weights: resolved from local places first, checked against pinned SHA-256 hashes.

(Stub API fixed by the architecture; the resolver and `chromapipe weights` commands fill it in.)
"""

from __future__ import annotations

from typing import Any


class WeightsUnavailable(RuntimeError):
    """A pretrained weights file is not present locally and may not or cannot be downloaded."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"pretrained weights {name!r} unavailable: {reason}")
        self.name = name
        self.reason = reason


def vgg16_features_state_dict() -> tuple[dict[str, Any], dict[str, str]]:
    """ImageNet-trained torchvision ``vgg16().features`` state dict and its provenance (name, source, sha256)."""
    raise WeightsUnavailable("vgg16_features", "resolver not implemented yet")


def alexnet_features_state_dict() -> tuple[dict[str, Any], dict[str, str]]:
    """ImageNet-trained torchvision ``alexnet().features`` state dict and its provenance."""
    raise WeightsUnavailable("alexnet_features", "resolver not implemented yet")


def efficientnet_lite0_state_dict() -> tuple[dict[str, Any], dict[str, str]]:
    """EfficientNet-Lite0 ImageNet classifier (efficientnet_lite_pytorch layout) and its provenance."""
    raise WeightsUnavailable("efficientnet_lite0", "resolver not implemented yet")
