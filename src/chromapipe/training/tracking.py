"""MLflow bookkeeping for training: one run per model, found again by its config hash to resume.

Workers log through ``MlflowClient`` against an explicit run id instead of the fluent API's global
"active run": the run is created by the driver and outlives any one worker process.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from chromapipe.color import join_lab, lab_to_rgb_uint8
from chromapipe.layout import CONFIG_HASH_TAG, MODEL_TAG, PREVIEW_IMAGE_KEY

MAX_PARAM_LEN = 6000


def get_experiment_id(client: MlflowClient, name: str, artifact_location: str | None = None) -> str:
    exp = client.get_experiment_by_name(name)
    return exp.experiment_id if exp else client.create_experiment(name, artifact_location=artifact_location)


def find_or_create_run(
    client: MlflowClient,
    experiment: str,
    model: str,
    config_hash: str,
    params: dict[str, Any],
    tags: dict[str, str],
    artifact_location: str | None = None,
) -> tuple[str, bool]:
    """The run of this model and configuration (resumed), or a new one. Returns (run id, resumed?)."""
    exp_id = get_experiment_id(client, experiment, artifact_location)
    runs = client.search_runs(
        [exp_id],
        filter_string=f"tags.`{MODEL_TAG}` = '{model}' and tags.`{CONFIG_HASH_TAG}` = '{config_hash}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if runs:
        client.update_run(runs[0].info.run_id, status="RUNNING")
        return runs[0].info.run_id, True
    run = client.create_run(exp_id, run_name=model, tags={MODEL_TAG: model, CONFIG_HASH_TAG: config_hash, **tags})
    flat = flatten(params)
    items = [Param(k, str(v)[:MAX_PARAM_LEN]) for k, v in flat.items()]
    for i in range(0, len(items), 100):
        client.log_batch(run.info.run_id, params=items[i : i + 100])
    return run.info.run_id, False


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def preview_grid(L: torch.Tensor, ab_pred: torch.Tensor, ab_true: torch.Tensor) -> np.ndarray:
    """Rows: gray input, prediction, ground truth; one column per image. HxWx3 uint8."""
    rows = []
    for ab in (torch.zeros_like(ab_pred), ab_pred, ab_true):
        rgb = lab_to_rgb_uint8(join_lab(L.float().cpu(), ab.float().cpu()))  # (B,3,H,W)
        rows.append(torch.cat(list(rgb), dim=-1))
    return torch.cat(rows, dim=-2).permute(1, 2, 0).numpy()


class RunLogger:
    """Rank 0's handle on the model's MLflow run."""

    def __init__(self, tracking_uri: str, run_id: str) -> None:
        self.client = MlflowClient(tracking_uri)
        self.run_id = run_id

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        ts = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), ts, step) for k, v in metrics.items()])

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])

    def log_preview(self, L: torch.Tensor, ab_pred: torch.Tensor, ab_true: torch.Tensor, step: int) -> None:
        self.client.log_image(self.run_id, preview_grid(L, ab_pred, ab_true), key=PREVIEW_IMAGE_KEY, step=step)
