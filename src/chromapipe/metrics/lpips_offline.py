"""LPIPS (lpips package, v0.1 linear heads) with its ImageNet backbone loaded offline.

Why: ``lpips.LPIPS()`` downloads the torchvision backbone at run time, which fails on offline machines and
would be silent about which weights were used. Here the network is built with ``pnet_rand=True`` (no
download; the package's own linear heads still load), then the resolver's pinned ``features`` weights are
copied into lpips' slices layer by layer, each shape checked against torchvision's architecture.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import torch

from chromapipe.metrics.provenance import pkg_version
from chromapipe.weights import WeightsUnavailable, alexnet_features_state_dict, vgg16_features_state_dict
from chromapipe.weights.registry import LPIPS_LIN
from chromapipe.weights.resolver import resolve_file

_LOADERS = {"alex": alexnet_features_state_dict, "vgg": vgg16_features_state_dict}


def map_features_to_lpips(net: torch.nn.Module, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename ``features.<i>.<p>`` to the lpips slice holding module ``<i>`` (lpips keeps torchvision's
    indices as child names inside ``slice1..sliceN``); raise on any missing layer or shape mismatch."""
    where: dict[str, str] = {}
    for slice_name, module in net.named_children():
        for child_name, _ in module.named_children():
            where[child_name] = slice_name
    own = net.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    for key, value in features.items():
        _, idx, param = key.split(".")
        if idx not in where:
            raise ValueError(f"layer features.{idx} has no counterpart in the lpips network")
        target = f"{where[idx]}.{idx}.{param}"
        if own[target].shape != value.shape:
            raise ValueError(f"{key} {tuple(value.shape)} does not fit {target} {tuple(own[target].shape)}")
        mapped[target] = value
    missing = sorted(set(own) - set(mapped))
    if missing:
        raise ValueError(f"backbone weights leave lpips parameters unset: {missing}")
    return mapped


def build_lpips(net: str = "alex", device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """An eval-mode ``lpips.LPIPS`` with real ImageNet weights, and its provenance.

    Built once per (net, device) in a process: the network is frozen and stateless, and the evaluate
    stage and validation during training score many models and sets with it (building LPIPS-vgg costs
    seconds on a CPU). Raises ``WeightsUnavailable`` if the backbone (or the package's linear head)
    cannot be resolved locally.
    """
    model, details = _build_lpips(net, torch.device(device))
    return model, dict(details)


@functools.cache
def _build_lpips(net: str, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    if net not in _LOADERS:
        raise ValueError(f"lpips net must be one of {sorted(_LOADERS)}, got {net!r}")
    import lpips

    features, backbone_prov = _LOADERS[net]()
    lin = resolve_file(f"lpips_linear_{net}")  # verifies the wheel's linear head against its pin
    with warnings.catch_warnings():  # torchvision's `pretrained=` deprecation, raised inside lpips
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net=net, version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    model.net.load_state_dict(map_features_to_lpips(model.net, features), strict=True)
    model = model.eval().to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    details = {
        "implementation": f"lpips {pkg_version('lpips')}",
        "net": net,
        "version": "0.1",
        "weights": backbone_prov.get("path", ""),
        "sha256": backbone_prov.get("sha256", ""),
        "weights_source": backbone_prov.get("source", ""),
        "linear_head": lin.path,
        "linear_head_sha256": lin.sha256,
        "input": "sRGB uint8 scaled to [-1, 1], native resolution",
    }
    return model, details


def lpips_per_image(model: torch.nn.Module, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) LPIPS distances of uint8 (B,3,H,W) pairs."""
    return lpips_of_signed_images(model, pred.float() / 127.5 - 1.0, target.float() / 127.5 - 1.0)


def lpips_of_signed_images(model: torch.nn.Module, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) LPIPS distances of float (B,3,H,W) images already in [-1, 1], lpips' input range."""
    device = next(model.parameters()).device
    with torch.no_grad():
        return (
            model(pred.to(device, torch.float32), target.to(device, torch.float32)).flatten().to("cpu", torch.float64)
        )


__all__ = [
    "build_lpips",
    "lpips_per_image",
    "lpips_of_signed_images",
    "map_features_to_lpips",
    "WeightsUnavailable",
    "LPIPS_LIN",
]
