"""The generator as an ONNX graph: what ``Recipe.predict`` computes at the model's resolution, batch dynamic.

Graph: input ``L`` (batch, 1, R, R) float32, CIE L* in [0, 100], already resized to the model's resolution R;
output ``ab`` (batch, 2, R, R) float32, a*b* in Lab units; PalGAN-family models also output ``palette``
(batch, 256), the palette the model predicted and used (the deterministic path: no reference palette, no
sampling). The recipe's own scaling (``encode_L`` / ``decode_ab``) is inside the graph, so every
architecture has the same interface. What is *outside* the graph is the full-resolution work the Colorizer
does around it (:mod:`chromapipe.inference.fullres`): L* of the original photo, its antialiased resize to R,
and afterwards the a*b* upsampled to the photo's size, joined with its own L* and gamut-mapped at constant L*.

Exporter: ``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript), opset 18. The TorchScript exporter
handles pix2pix and ChromaGAN but not PalGAN (its adaptive pooling takes its output size from another
tensor's shape, which that exporter cannot make static); the dynamo exporter handles all three. The example
batch is 2: torch.export specialises a dimension of size 1, which would fix the batch.

Parity (:func:`check_parity`): ``onnx.checker``, then onnxruntime on the CPU against torch on the same
inputs — three L* planes (a smooth synthetic photo, uniform noise, a flat mid-gray) at batch 3, a batch the
export never saw. The a*b* tolerance is :data:`AB_TOLERANCE` = 1e-4 of the a*b* range (256 Lab units), i.e.
0.0256: an 8-bit sRGB output code is worth about 0.5-1.5 Lab units of a*b*, so a difference below the
tolerance is 20-60 times smaller than one output code and cannot change a rendered pixel except where
rounding is on a knife's edge. What remains is float32 summation order (onnxruntime's convolution kernels are
not torch's): measured 1e-5 for pix2pix and ChromaGAN, 9e-4 for PalGAN, whose instance norms and attention
softmax amplify it (``reports/benchmarks.md``, "Using trained models: registration, serving and export").
Palettes sum to 1; their tolerance is 1e-6.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

OPSET = 18
INPUT = "L"
AB_RANGE = 256.0  # a*, b* in [-128, 128)
AB_TOLERANCE = 1e-4 * AB_RANGE
PALETTE_TOLERANCE = 1e-6
EXPORT_BATCH, CHECK_BATCH = 2, 3


class PredictAtModelResolution(nn.Module):
    """``recipe.predict(G, L)`` as a module with tensor outputs (``ab``, then ``palette`` where the model has
    one): at the model's resolution the recipe's resizes are identities, so this is the network with the
    recipe's scaling on both sides."""

    def __init__(self, recipe: Any, G: nn.Module) -> None:
        super().__init__()
        self.recipe, self.G = recipe, G

    def forward(self, L: torch.Tensor) -> tuple[torch.Tensor, ...]:
        prediction = self.recipe.predict(self.G, L)
        return (prediction["ab"],) + ((prediction["palette"],) if "palette" in prediction else ())


def output_names(recipe: Any) -> list[str]:
    return ["ab", "palette"] if recipe.has_palette else ["ab"]


def parity_inputs(resolution: int, batch: int = CHECK_BATCH) -> torch.Tensor:
    """(batch, 1, R, R) L* planes: a smooth synthetic photo, uniform noise, a flat mid-gray (repeating)."""
    y, x = torch.meshgrid(torch.linspace(0, 1, resolution), torch.linspace(0, 1, resolution), indexing="ij")
    photo = 50 + 35 * torch.sin(6 * x) * torch.cos(4 * y) + 10 * x
    noise = torch.rand(resolution, resolution, generator=torch.Generator().manual_seed(0)) * 100
    planes = [photo, noise, torch.full_like(photo, 50.0)]
    return torch.stack([planes[i % 3] for i in range(batch)])[:, None].clamp(0, 100).float()


def export_onnx(recipe: Any, G: nn.Module, path: Path, opset: int = OPSET) -> dict[str, Any]:
    """Write the graph to ``path`` (one file: the weights inside, every generator here is under ONNX's 2 GB
    limit); returns what was exported (opset, inputs, outputs, seconds)."""
    module = PredictAtModelResolution(recipe, G.cpu().eval()).eval()
    R = recipe.resolution
    example = (parity_inputs(R, EXPORT_BATCH),)
    names = output_names(recipe)
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            example,
            str(path),
            dynamo=True,
            input_names=[INPUT],
            output_names=names,
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            opset_version=opset,
            external_data=False,
            verbose=False,
        )
    G.eval()  # the exporter restores the wrapper's training flag onto its children; keep the generator in eval
    return {
        "opset": opset,
        "exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}",
        "inputs": {INPUT: ["batch", 1, R, R]},
        "outputs": {n: ["batch", 2, R, R] if n == "ab" else ["batch", 256] for n in names},
        "seconds": round(time.perf_counter() - t0, 1),
    }


def check_parity(recipe: Any, G: nn.Module, path: Path) -> dict[str, Any]:
    """``onnx.checker`` on the file, then onnxruntime (CPU) vs torch at batch :data:`CHECK_BATCH`: per output
    the max and mean absolute difference and the tolerance. Raises AssertionError beyond a tolerance."""
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(str(path))
    L = parity_inputs(recipe.resolution)
    module = PredictAtModelResolution(recipe, G.cpu().eval()).eval()
    with torch.inference_mode():
        expected = [t.numpy() for t in module(L)]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {INPUT: L.numpy()})
    record: dict[str, Any] = {"batch": CHECK_BATCH, "onnxruntime": ort.__version__, "outputs": {}}
    for name, want, have in zip(output_names(recipe), expected, got):
        if want.shape != have.shape:
            raise AssertionError(f"ONNX output {name}: shape {have.shape}, torch {want.shape}")
        diff = np.abs(want.astype(np.float64) - have)
        tolerance = AB_TOLERANCE if name == "ab" else PALETTE_TOLERANCE
        record["outputs"][name] = {
            "max_abs_diff": float(diff.max()),
            "mean_abs_diff": float(diff.mean()),
            "tolerance": tolerance,
            "unit": "Lab units (a*b* range 256)" if name == "ab" else "probability",
        }
        if not diff.max() <= tolerance:
            raise AssertionError(f"ONNX output {name}: max |diff| {diff.max():.3g} over the tolerance {tolerance:.3g}")
    return record
