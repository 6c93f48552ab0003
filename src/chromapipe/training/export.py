"""The trained generator's way into the model's MLflow run and back out.

Rank 0 logs the generator file when a model's last step is done (``log_generator``), from wherever the
worker runs; the driver then copies it to ``models/<model>/generator.pt`` (:func:`read_generator`).
One path for a model trained just now and for one a previous run finished: a finished configuration is
never trained again, and Ray's resume checkpoints can be deleted once every model's generator is logged.
Where things go and what they are called is :mod:`chromapipe.layout`'s.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from mlflow.tracking import MlflowClient
from torch import nn

from chromapipe.config import ModelConfig
from chromapipe.layout import GENERATOR_ARTIFACT_DIR, GENERATOR_FILE, PREPROCESSING_ARTIFACT, download_generator
from chromapipe.models.checkpoint import save_generator


def preprocessing_spec(cfg: ModelConfig, describe: dict[str, Any]) -> dict[str, Any]:
    """How a photo becomes the generator's input and its output becomes a photo (logged beside the weights)."""
    return {
        "color_space": "sRGB -> CIE L*a*b* (D65, 2 deg observer; scikit-image's constants)",
        "input": f"L* of the image, resized to {cfg.resolution}x{cfg.resolution} (bilinear, antialiased)",
        "network_scaling": describe.get("scaling", "see the recipe"),
        "output": "a*b* in Lab units at the model resolution, resized bilinearly to the image size "
        "and joined with the full-resolution L*",
        "arch": cfg.arch,
        "resolution": cfg.resolution,
    }


def log_generator(
    client: MlflowClient, run_id: str, name: str, cfg: ModelConfig, G: nn.Module, meta: dict[str, Any]
) -> None:
    """Write the generator (colorization path only) and log it with its preprocessing spec; the
    preprocessing file goes first, so a logged generator always has it."""
    client.log_dict(run_id, preprocessing_spec(cfg, meta.get("describe", {})), PREPROCESSING_ARTIFACT)
    with tempfile.TemporaryDirectory(prefix="chromapipe-generator-") as tmp:
        path = Path(tmp) / GENERATOR_FILE
        save_generator(path, name, cfg, G, meta=meta)
        client.log_artifact(run_id, str(path), artifact_path=GENERATOR_ARTIFACT_DIR)


def read_generator(tracking_uri: str, run_id: str, generator_file: Path) -> dict[str, Any]:
    """Copy the run's generator to ``generator_file``; returns the metadata the worker wrote into it."""
    download_generator(tracking_uri, run_id, generator_file)
    return dict(torch.load(generator_file, map_location="cpu", weights_only=True, mmap=True)["meta"])
