"""The train stage's driver, in three steps: start (name the run), fit (Ray Train), export (the generator).

The Ray run is named after a hash of everything that determines the training (model config, data
manifest, seed, world size, the project code the training imports): rerunning an interrupted stage resumes
that run's last checkpoint, while a change of params or code gets a new name and starts fresh instead of
silently resuming an old run. A run that already finished is not trained again: its generator is restored
from the MLflow run it was logged to, so Ray's multi-GB resume checkpoints can be deleted once the
generator is exported (``train.keep_checkpoints: false``, the default).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import torch
from mlflow.tracking import MlflowClient
from ray.train import CheckpointConfig, FailureConfig, Result, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from chromapipe.codedeps import import_closure
from chromapipe.config import ModelConfig, Params, artifact_location, config_hash, resolve_path, to_dict, tracking_uri
from chromapipe.data.shards import read_manifest
from chromapipe.hashing import source_fingerprint
from chromapipe.models.base import Recipe
from chromapipe.models.checkpoint import save_generator
from chromapipe.models.registry import build_recipe
from chromapipe.training.loop import CHECKPOINT_FILE, WorkerConfig, train_loop_per_worker
from chromapipe.training.tracking import find_or_create_run

log = logging.getLogger(__name__)

GENERATOR_ARTIFACT = "generator/generator.pt"


def _connect_ray(num_cpus_needed: float) -> bool:
    """Join the cluster named by RAY_ADDRESS, or start a local instance. Returns True if we started it."""
    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS")
    if address:
        log.info("connecting to the Ray cluster at %s", address)
        ray.init(address=address, log_to_driver=True, runtime_env={"worker_process_setup_hook": quiet_local_ray})
        return False
    ray.init(
        address="local",  # a new instance: never silently join another cluster running on this machine
        num_cpus=max(os.cpu_count() or 1, int(num_cpus_needed + 0.999)),
        include_dashboard=False,
        log_to_driver=True,
        runtime_env={"worker_process_setup_hook": quiet_local_ray},
    )
    return True


def quiet_local_ray() -> None:
    """Runs in every Ray worker of our jobs. Without the dashboard (not installed: ray[train] only)
    Ray Train's placement-group cleaner cannot reach the State API and warns about it every few seconds
    for the whole run; the warning says nothing about training, so it is silenced there."""
    logging.getLogger("ray.train.v2._internal.execution.controller.placement_group_cleaner").setLevel(logging.ERROR)


def _data_fingerprint(manifest: dict[str, Any]) -> dict[str, Any]:
    return {"params": manifest["params"], "shards": [s["sha256"] for s in manifest["splits"]["train"]["shards"]]}


def _code_fingerprint(recipe: Recipe) -> str:
    """The project code the train stage runs — the same import closure its DVC deps cover, so DVC reruns
    the stage exactly when this changes — plus the recipe's own module (a ``module:Class`` arch may live
    outside the package)."""
    stage_script = Path(__file__).resolve().parents[3] / "pipeline" / "train.py"
    entry = [stage_script] if stage_script.is_file() else [Path(__file__).resolve()]
    return source_fingerprint(*sorted(import_closure(entry)), Path(inspect.getfile(type(recipe))).resolve())


@dataclass
class TrainingRun:
    """A model's training, named: what start() decided and fit()/export() use."""

    name: str
    cfg: ModelConfig
    recipe: Recipe
    config_hash: str
    run_id: str
    resumed: bool
    finished: bool  # the MLflow run already holds this configuration's generator
    data_root: Path
    tracking_uri: str


def start(params: Params, name: str) -> TrainingRun:
    """Name the run after its configuration and find or create its MLflow run."""
    cfg = params.model(name)
    tc = params.train
    data_root = params.dataset_dir(params.training_set(name))
    manifest = read_manifest(data_root)
    recipe = build_recipe(cfg)
    h = config_hash(cfg, _data_fingerprint(manifest), params.seed, tc.num_workers, tc.use_gpu, _code_fingerprint(recipe))
    uri = tracking_uri(params)
    client = MlflowClient(uri)
    run_id, resumed = find_or_create_run(
        client, params.tracking.experiment, name, h,
        params={"model": to_dict(cfg), "train": to_dict(tc), "data": manifest["params"], "seed": params.seed,
                "data_counts": {k: v["n_images"] for k, v in manifest["splits"].items()}},
        tags={"chromapipe.arch": cfg.arch},
        artifact_location=artifact_location(params),
    )
    finished = resumed and any(a.path == GENERATOR_ARTIFACT for a in client.list_artifacts(run_id, "generator"))
    return TrainingRun(name, cfg, recipe, h, run_id, resumed, finished, data_root, uri)


def fit(params: Params, run: TrainingRun) -> tuple[dict[str, torch.Tensor], dict[str, Any], Path]:
    """Train under Ray Train; returns (generator state dict, cluster facts, Ray's run directory)."""
    tc = params.train
    started_ray = _connect_ray(tc.num_workers * tc.resources_per_worker.get("CPU", 1.0))
    try:
        worker = WorkerConfig(name=run.name, model=run.cfg, train=tc, seed=params.seed, data_root=run.data_root,
                              tracking_uri=run.tracking_uri, run_id=run.run_id)
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config=worker,
            scaling_config=ScalingConfig(num_workers=tc.num_workers, use_gpu=tc.use_gpu, resources_per_worker=dict(tc.resources_per_worker)),
            run_config=RunConfig(
                name=f"{run.name}-{run.config_hash}",
                storage_path=str(resolve_path(tc.storage_path)),
                failure_config=FailureConfig(max_failures=tc.max_failures),
                checkpoint_config=CheckpointConfig(num_to_keep=2),
            ),
        )
        result: Result = trainer.fit()
        cluster = {"gcs_address": ray.get_runtime_context().gcs_address, "nodes": sum(1 for n in ray.nodes() if n["Alive"]),
                   "joined_existing": not started_ray}
    finally:
        if started_ray:
            ray.shutdown()
    if result.checkpoint is None:
        raise RuntimeError(f"training {run.name} produced no checkpoint (see the Ray logs above)")
    with result.checkpoint.as_directory() as d:
        state = torch.load(Path(d) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    return {"G": state["G"], "step": int(state["step"]), "describe": state.get("describe", {})}, cluster, Path(result.path)


def _generator_with(recipe: Recipe, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The generator holding trained weights, built on the meta device first: shapes only, so no
    pretrained file is loaded (or needed) on the driver just to be overwritten."""
    with torch.device("meta"):
        G = recipe.build_generator()
    G.load_state_dict(weights, assign=True)
    if any(t.is_meta for t in [*G.parameters(), *G.buffers()]):  # a tensor outside the state dict
        G = recipe.build_generator()
        G.load_state_dict(weights)
    return G


def _restore_finished(run: TrainingRun, generator_file: Path) -> int:
    """The generator a finished run logged, copied back from MLflow (no retraining); returns its steps."""
    generator_file.parent.mkdir(parents=True, exist_ok=True)
    local = MlflowClient(run.tracking_uri).download_artifacts(run.run_id, GENERATOR_ARTIFACT, str(generator_file.parent / ".restore"))
    shutil.move(local, generator_file)
    shutil.rmtree(generator_file.parent / ".restore", ignore_errors=True)
    blob = torch.load(generator_file, map_location="cpu", weights_only=True, mmap=True)
    return int(blob["meta"].get("steps", 0))


def export(params: Params, run: TrainingRun, state: dict[str, Any], cluster: dict[str, Any], wall: float) -> dict[str, Any]:
    """Write ``<train.out>/<name>/generator.pt`` and ``train.json``; log them to the MLflow run."""
    tc = params.train
    out_dir = resolve_path(tc.out) / run.name
    generator_file = out_dir / "generator.pt"
    client = MlflowClient(run.tracking_uri)
    describe = state.get("describe") or run.recipe.describe()
    if state:
        G = _generator_with(run.recipe, state["G"])
        save_generator(generator_file, run.name, run.cfg, G, meta={"run_id": run.run_id, "config_hash": run.config_hash, "steps": state["step"], "describe": describe})
        client.log_artifact(run.run_id, str(generator_file), artifact_path="generator")
        client.log_dict(run.run_id, preprocessing_spec(run.cfg, describe), "generator/preprocessing.json")
        steps = state["step"]
    else:
        steps = _restore_finished(run, generator_file)
    summary = {
        "model": run.name, "arch": run.cfg.arch, "run_id": run.run_id, "config_hash": run.config_hash,
        "resumed": run.resumed, "restored_from_mlflow": not state, "steps": steps,
        "global_batch": run.cfg.batch_size, "images_seen": steps * run.cfg.batch_size,
        "wall_s": round(wall, 1), "images_per_s_incl_startup": round(steps * run.cfg.batch_size / max(wall, 1e-9), 3),
        "resolution": run.cfg.resolution, "num_workers": tc.num_workers, "use_gpu": tc.use_gpu,
        "ray": cluster, "describe": describe,
    }
    (out_dir / "train.json").write_text(json.dumps(summary, indent=1, default=str))
    client.log_dict(run.run_id, summary, "train.json")
    client.set_terminated(run.run_id)
    return summary


def train_model(params: Params, name: str) -> dict[str, Any]:
    """Train model ``name`` (or restore its finished run); write the generator and ``train.json``."""
    run = start(params, name)
    t0 = time.time()
    state, cluster, ray_dir = ({}, {}, None) if run.finished else fit(params, run)
    summary = export(params, run, state, cluster, time.time() - t0)
    if ray_dir is not None and not params.train.keep_checkpoints:
        _drop_checkpoints(ray_dir)
    log.info("trained %s: %d steps in %.1fs -> %s", name, summary["steps"], summary["wall_s"], resolve_path(params.train.out) / name)
    return summary


def _drop_checkpoints(ray_dir: Path) -> None:
    """Delete a finished run's Ray directory: its resume checkpoints (generator + discriminator + Adam
    moments, up to 2 GB each) and the checkpoint manager's index of them. The exported generator and the
    MLflow run hold everything used afterwards; a rerun of the same configuration restores from MLflow."""
    if ray_dir.is_dir():  # local or NFS storage; a remote store keeps its own lifecycle rules
        shutil.rmtree(ray_dir, ignore_errors=True)


def preprocessing_spec(cfg: Any, describe: dict[str, Any]) -> dict[str, Any]:
    """How a photo becomes the generator's input and its output becomes a photo (logged beside the weights)."""
    return {
        "color_space": "sRGB -> CIE L*a*b* (D65, 2 deg observer; scikit-image's constants)",
        "input": f"L* of the image, resized to {cfg.resolution}x{cfg.resolution} (bilinear, antialiased)",
        "network_scaling": describe.get("scaling", "see the recipe"),
        "output": "a*b* in Lab units at the model resolution, resized bilinearly to the image size and joined with the full-resolution L*",
        "arch": cfg.arch,
        "resolution": cfg.resolution,
    }
