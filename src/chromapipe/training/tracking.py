"""MLflow bookkeeping for training: one run per model, found again by its config hash to resume.

Workers log through ``MlflowClient`` against an explicit run id instead of the fluent API's global
"active run": the run is created by the driver and outlives any one worker process.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from chromapipe.color import join_lab, lab_to_rgb_uint8
from chromapipe.config import TrainConfig
from chromapipe.data.shards import LabShardDataset
from chromapipe.layout import (
    COMPILE_METRIC,
    CONFIG_HASH_TAG,
    MODEL_TAG,
    PREVIEW_IMAGE_KEY,
    PREVIEW_IMAGES_DIR,
    TAG_PREFIX,
    TRAIN_METRIC,
    VAL_GRAY_METRIC,
    VAL_METRIC,
)
from chromapipe.models.base import Recipe, unwrap
from chromapipe.training.performance import CompileWatch
from chromapipe.training.trainer import Hook, LogEvent, Networks
from chromapipe.training.validation import Validator

log = logging.getLogger("chromapipe.train")

PREVIEW_IMAGES = 4

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
    """Rank 0's handle on the model's MLflow run.

    After a resume, the steps between the checkpoint and the interruption are trained again; their metrics
    and preview images are logged already (and, since a resumed run takes exactly the steps it replaces, with
    the same values). :meth:`resume_at` reads what the run holds, and from then on a (metric, step) that is
    already there is not logged a second time: each step stays in the history once.
    """

    def __init__(self, tracking_uri: str, run_id: str) -> None:
        self.client = MlflowClient(tracking_uri)
        self.run_id = run_id
        self._logged_through: dict[str, int] = {}  # metric key -> last step already in the run
        self._previews: set[int] = set()  # steps whose preview grid the run holds

    def resume_at(self, step: int) -> None:
        """Training continues after ``step``: remember how far each metric of the run was logged."""
        if step == 0:
            return
        for key in self.client.get_run(self.run_id).data.metrics:
            history = self.client.get_metric_history(self.run_id, key)
            self._logged_through[key] = max((m.step for m in history), default=-1)
        prefix = f"{PREVIEW_IMAGES_DIR}/{PREVIEW_IMAGE_KEY}+step+"  # MLflow's name for a stepped image
        for artifact in self.client.list_artifacts(self.run_id, PREVIEW_IMAGES_DIR):
            if artifact.path.startswith(prefix):
                self._previews.add(int(artifact.path.removeprefix(prefix).split("+", 1)[0]))

    def _new(self, key: str, step: int) -> bool:
        return step > self._logged_through.get(key, -1)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        ts = int(time.time() * 1000)
        fresh = [Metric(k, float(v), ts, step) for k, v in metrics.items() if self._new(k, step)]
        if fresh:
            self.client.log_batch(self.run_id, metrics=fresh)

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])

    def log_preview(self, L: torch.Tensor, ab_pred: torch.Tensor, ab_true: torch.Tensor, step: int) -> None:
        if step not in self._previews:
            self._previews.add(step)
            self.client.log_image(self.run_id, preview_grid(L, ab_pred, ab_true), key=PREVIEW_IMAGE_KEY, step=step)


class RunTracking(Hook):
    """What rank 0 records in the model's MLflow run while it trains: losses, learning rate and throughput at
    log steps (``train/*``), torch.compile's counts (``compile/*``, with a warning when a graph broke),
    preview grids every ``train.image_every`` steps, and validation every ``train.validate_every`` steps
    (``val/*``, beside the gray baseline's ``val_gray/*`` logged once at step 0)."""

    def __init__(
        self,
        name: str,
        recipe: Recipe,
        tc: TrainConfig,
        logger: RunLogger,
        data_root: Path,
        device: torch.device,
        start_step: int,
    ) -> None:
        self.name, self.recipe, self.tc, self.logger = name, recipe, tc, logger
        logger.resume_at(start_step)
        # provenance from where the networks were built (which weights loaded), not from the driver
        logger.set_tags({f"{TAG_PREFIX}{k}": v for k, v in flatten(recipe.describe()).items()})
        preview = LabShardDataset(data_root, "val", limit=PREVIEW_IMAGES)
        if len(preview) == 0:
            preview = LabShardDataset(data_root, "train", limit=PREVIEW_IMAGES)
        items = [preview[i] for i in range(len(preview))]
        self.preview = {k: torch.stack([it[k] for it in items]).to(device) for k in ("L", "ab")}
        self.validator: Validator | None = None
        if tc.validate_every:
            validator = Validator(data_root, recipe, tc.validate_images, device)
            if validator.n:
                self.validator = validator
            else:
                log.warning("%s: the val split is empty: no validation during training", name)
        if self.validator is not None and start_step == 0:  # the reference lines, once per run
            self.logger.log_metrics({f"{VAL_GRAY_METRIC}{k}": v for k, v in self.validator.gray().items()}, 0)
        self.watch = CompileWatch(device.type, tc.compile_mode) if tc.compile else None
        self.steps = 0

    def on_log(self, event: LogEvent, nets: Networks) -> None:
        compiled, problems = self.watch.look() if self.watch else ({}, [])
        for problem in problems:  # silent otherwise, unless TORCH_LOGS asks
            log.warning("%s step %d: %s", self.name, event.step, problem)
        self.steps = event.steps
        self.logger.log_metrics(
            {f"{TRAIN_METRIC}{k}": v for k, v in event.values.items()}
            | {f"{TRAIN_METRIC}lr_g": event.lr_g, f"{TRAIN_METRIC}images_per_s": event.images_per_s}
            | {f"{COMPILE_METRIC}{k}": v for k, v in compiled.items()},
            event.step,
        )

    def after_step(self, step: int, nets: Networks) -> None:
        last = step == self.steps
        G = unwrap(nets.G)
        if step % self.tc.image_every == 0 or last:
            was_training = G.training
            G.eval()
            ab = self.recipe.predict(G, self.preview["L"])["ab"]
            G.train(was_training)
            self.logger.log_preview(self.preview["L"], ab, self.preview["ab"], step)
        if self.validator is not None and (step % self.tc.validate_every == 0 or last):
            scores = self.validator(G)
            self.logger.log_metrics({f"{VAL_METRIC}{k}": v for k, v in scores.items()}, step)
            log.info("%s step %d validation: %s", self.name, step, {k: round(v, 4) for k, v in scores.items()})
