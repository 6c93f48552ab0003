"""The evaluate stage: colorize a split with a trained generator and score it (or the gray baseline).

Protocol: every model is scored at the stored data resolution in sRGB uint8. A model that works at
another resolution (ChromaGAN's 224²) sees L* resized to its resolution; its ab prediction is resized
back and joined with the full-resolution L*, as ChromaGAN's own inference does. The gray baseline
(ab = 0) is scored the same way.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from mlflow.tracking import MlflowClient
from torch.utils.data import DataLoader
from torchvision.io import write_png
from tqdm import tqdm

from chromapipe.color import join_lab, lab_to_rgb_uint8
from chromapipe.config import Params, resolve_path, to_dict, tracking_uri
from chromapipe.data.shards import LabShardDataset, read_manifest
from chromapipe.metrics.suite import MetricSuite
from chromapipe.models.base import Recipe
from chromapipe.models.checkpoint import load_generator

log = logging.getLogger(__name__)

GRAY = "gray"


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def predict_ab(recipe: Recipe, G: torch.nn.Module, L: torch.Tensor) -> torch.Tensor:
    """ab at L's resolution: predicted at the model's resolution, resized back."""
    ab = recipe.colorize(G, resize(L, recipe.resolution))
    return resize(ab, L.shape[-1])


def _protocol(params: Params, manifest: dict[str, Any], n_images: int) -> dict[str, Any]:
    return {
        "dataset": params.data.source if params.data.source == "sample" else Path(params.data.root or "").name,
        "split": params.evaluate.split,
        "n_images": n_images,
        "resolution": params.data.size,
        "resize": params.data.resize + (f" ({params.data.crops_per_image} crops per photo)" if params.data.crops_per_image > 1 else ""),
        "color_space": "sRGB uint8 (L*a*b* D65 -> sRGB)",
        "averaging": "mean over images",
        "n_sources": manifest["splits"][params.evaluate.split]["n_sources"],
    }


def _save_png(path: Path, rgb: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(rgb.cpu(), str(path))


def evaluate(params: Params, name: str, device: str = "auto") -> dict[str, Any]:
    """Score model ``name`` (or ``"gray"``) and write ``<evaluate.out>/<name>/metrics.json`` + samples."""
    ec = params.evaluate
    dev = pick_device(device)
    data_root = resolve_path(params.data.out)
    manifest = read_manifest(data_root)
    out_dir = resolve_path(ec.out) / name
    dataset = LabShardDataset(data_root, ec.split, limit=ec.max_images)
    if len(dataset) == 0:
        raise RuntimeError(f"evaluate: the {ec.split!r} split is empty; adjust data.splits")
    loader = DataLoader(dataset, batch_size=ec.batch_size, shuffle=False)
    suite = MetricSuite(lpips_net=ec.lpips_net, fid=ec.fid, device=str(dev))

    recipe = G = None
    run_id = None
    arch = GRAY
    if name != GRAY:
        recipe, G, info = load_generator(resolve_path(params.train.out) / name / "generator.pt", dev)
        run_id = info["meta"].get("run_id")
        arch = info["config"].arch
    palettes: dict[str, list[np.ndarray]] = {"pred": [], "gt": []}
    seen = 0
    t0 = time.time()
    for batch in tqdm(loader, desc=f"evaluate {name}", unit="batch"):
        L, ab_true = batch["L"].to(dev), batch["ab"].to(dev)
        ab = torch.zeros_like(ab_true) if G is None else predict_ab(recipe, G, L)
        pred = lab_to_rgb_uint8(join_lab(L, ab))
        target = lab_to_rgb_uint8(join_lab(L, ab_true))
        suite.update(pred, target)
        for i in range(min(len(pred), ec.samples - seen)):
            _save_png(out_dir / "samples" / f"{seen + i:03d}.png", pred[i])
            if G is None:
                _save_png(out_dir / "ground_truth" / f"{seen + i:03d}.png", target[i])
            elif hasattr(recipe, "palette_target"):
                with torch.no_grad():
                    small = resize(L[i : i + 1], recipe.resolution)
                    palettes["pred"].append(G(recipe.encode_L(small))["palette"].float().cpu().numpy()[0])
                    palettes["gt"].append(recipe.palette_target(ab_true[i : i + 1]).float().cpu().numpy()[0])
        seen += len(pred)
    seconds = time.time() - t0
    report = suite.compute().to_dict()
    result = {
        "model": name,
        "arch": arch,
        "kind": "baseline" if G is None else "measured",
        "run_id": run_id,
        "protocol": _protocol(params, manifest, seen),
        **report,
        "timing": {"seconds": round(seconds, 2), "images_per_s": round(seen / max(seconds, 1e-9), 3), "device": str(dev)},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    if palettes["pred"]:
        grid = lambda hs: np.stack(hs).reshape(len(hs), 16, 16)  # noqa: E731
        np.savez(out_dir / "palettes.npz", pred=grid(palettes["pred"]), gt=grid(palettes["gt"]))
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=1, default=str))
    scores = {k: v for k, v in result["metrics"].items() if v is not None} | {"n_images": seen}
    (out_dir / "scores.json").write_text(json.dumps(scores, indent=1))  # what `dvc metrics show/diff` compares
    if run_id:
        _log_to_mlflow(params, run_id, result, out_dir)
    log.info("evaluated %s on %d images: %s", name, seen, {k: v for k, v in result["metrics"].items() if v is not None})
    return result


def _log_to_mlflow(params: Params, run_id: str, result: dict[str, Any], out_dir: Path) -> None:
    client = MlflowClient(tracking_uri(params))
    values = {f"eval/{k}": float(v) for k, v in result["metrics"].items() if isinstance(v, (int, float))}
    for key, value in values.items():
        client.log_metric(run_id, key, value)
    client.log_dict(run_id, result, "evaluation/metrics.json")
    client.log_dict(run_id, to_dict(params.evaluate), "evaluation/params.json")
    for png in sorted((out_dir / "samples").glob("*.png")):
        client.log_artifact(run_id, str(png), artifact_path="evaluation/samples")
