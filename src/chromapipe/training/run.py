"""The train stage's driver, in three steps: start (name each model's run), fit (one Ray Train run for
every model that needs training), export (each generator from its MLflow run to ``models/<model>``).

Each model's MLflow run is found by a hash of everything that determines its training (model config, data
manifest, seed, world size, the project code the training imports); the Ray run is named after the hashes
of all models the stage was asked for. Rerunning an interrupted stage therefore resumes the model that
was in progress from its last checkpoint, while a change of params or code starts that model fresh
instead of silently resuming an old run. A model whose configuration already finished is not trained
again: its generator comes back from the MLflow run it was logged to, so Ray's multi-GB resume
checkpoints can be deleted once every generator is exported (``train.keep_checkpoints: false``, the
default), and a stage rerun for one changed model trains that model only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from mlflow.tracking import MlflowClient
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from chromapipe.codedeps import import_closure
from chromapipe.config import ModelConfig, Params, artifact_location, config_hash, resolve_path, to_dict, tracking_uri
from chromapipe.data.manifest import read_manifest
from chromapipe.hashing import source_fingerprint
from chromapipe.layout import (
    ARCH_TAG,
    DATA_COUNTS_PARAMS,
    DATA_PARAMS,
    MODEL_PARAMS,
    SEED_PARAM,
    TRAIN_PARAMS,
    TRAIN_SUMMARY_ARTIFACT,
    generator_logged,
)
from chromapipe.models.base import Recipe
from chromapipe.models.registry import build_recipe
from chromapipe.training.export import read_generator
from chromapipe.training.tracking import find_or_create_run
from chromapipe.training.worker import WorkerConfig, train_loop_per_worker

log = logging.getLogger(__name__)


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
    #: what the config hash covers, apart: equal data fingerprints mean the same prepared shards (their params
    #: and checksums), equal code fingerprints the same training code (the registry tags versions with both)
    data_fingerprint: str
    code_fingerprint: str


def start(params: Params, name: str) -> TrainingRun:
    """Name the run after its configuration and find or create its MLflow run."""
    cfg = params.model(name)
    tc = params.train
    data_root = params.dataset_dir(params.training_set(name))
    manifest = read_manifest(data_root)
    recipe = build_recipe(cfg)
    # what determines the trained model: the speed options (amp, compile, ...) only reorder float operations
    what = (tc.num_workers, tc.use_gpu, tc.sync_batchnorm)
    trained = dataclasses.replace(cfg, ours={})  # a note on an open choice changes nothing trained
    data, code = config_hash(manifest.data_fingerprint()), _code_fingerprint(recipe)[:12]
    h = config_hash(trained, manifest.data_fingerprint(), params.seed, *what, _code_fingerprint(recipe))
    uri = tracking_uri(params)
    client = MlflowClient(uri)
    run_id, resumed = find_or_create_run(
        client,
        params.tracking.experiment,
        name,
        h,
        params={
            MODEL_PARAMS: to_dict(cfg),
            TRAIN_PARAMS: to_dict(tc),
            DATA_PARAMS: manifest.params,
            SEED_PARAM: params.seed,
            DATA_COUNTS_PARAMS: manifest.image_counts(),
        },
        tags={ARCH_TAG: cfg.arch},
        artifact_location=artifact_location(params),
    )
    finished = resumed and generator_logged(client, run_id)
    return TrainingRun(name, cfg, recipe, h, run_id, resumed, finished, data_root, uri, data, code)


def _ray_run_name(runs: list[TrainingRun]) -> str:
    """Stable for the same models and configurations, so an interrupted stage resumes its Ray run."""
    if len(runs) == 1:
        return f"{runs[0].name}-{runs[0].config_hash}"
    digest = hashlib.sha256(" ".join(f"{r.name}={r.config_hash}" for r in runs).encode()).hexdigest()[:12]
    return f"{len(runs)}-models-{digest}"


def worker_config(params: Params, run: TrainingRun) -> WorkerConfig:
    """What every worker needs to train ``run`` (pickled to the workers as it is)."""
    return WorkerConfig(
        name=run.name,
        model=run.cfg,
        train=params.train,
        seed=params.seed,
        data_root=run.data_root,
        tracking_uri=run.tracking_uri,
        run_id=run.run_id,
        config_hash=run.config_hash,
    )


def fit(
    params: Params,
    runs: list[TrainingRun],
    ray_name: str,
    loop: Callable[[list[WorkerConfig]], None] = train_loop_per_worker,
) -> tuple[dict[str, Any], Path]:
    """Train ``runs`` in one Ray Train run (its worker group runs ``loop``, which trains them in turn); returns
    (cluster facts, Ray's run directory). Every generator is in its MLflow run afterwards.

    The worker group comes from ``train`` (``num_workers`` × ``resources_per_worker``); each worker's models
    are :func:`worker_config` of each run (a caller may pass its own list through ``loop``'s config)."""
    return fit_workers(params, [worker_config(params, r) for r in runs], ray_name, loop)


def fit_workers(
    params: Params,
    workers: list[WorkerConfig],
    ray_name: str,
    loop: Callable[[list[WorkerConfig]], None] = train_loop_per_worker,
) -> tuple[dict[str, Any], Path]:
    """:func:`fit` for given worker configurations (e.g. of several params variants in one worker group)."""
    tc = params.train
    started_ray = _connect_ray(tc.num_workers * tc.resources_per_worker.get("CPU", 1.0))
    try:
        trainer = TorchTrainer(
            loop,
            train_loop_config=workers,
            scaling_config=ScalingConfig(
                num_workers=tc.num_workers, use_gpu=tc.use_gpu, resources_per_worker=dict(tc.resources_per_worker)
            ),
            run_config=RunConfig(
                name=ray_name,
                storage_path=str(resolve_path(tc.storage_path)),
                failure_config=FailureConfig(max_failures=tc.max_failures),
                checkpoint_config=CheckpointConfig(num_to_keep=2),
            ),
        )
        result = trainer.fit()
        cluster = {
            "gcs_address": ray.get_runtime_context().gcs_address,
            "nodes": sum(1 for n in ray.nodes() if n["Alive"]),
            "joined_existing": not started_ray,
            "ray_run": ray_name,
            "models_in_ray_run": [w.name for w in workers],
        }
    finally:
        if started_ray:
            ray.shutdown()
    missing = [w.name for w in workers if not generator_logged(MlflowClient(w.tracking_uri), w.run_id)]
    if missing:
        raise RuntimeError(f"training finished without logging the generator of {missing} (see the Ray logs above)")
    return cluster, Path(result.path)


def export(params: Params, run: TrainingRun, cluster: dict[str, Any]) -> dict[str, Any]:
    """Copy the run's generator to ``models/<name>/generator.pt``; write and log ``train.json``.
    ``cluster``: the Ray facts if this stage trained it, empty if it came back from a finished run."""
    layout = params.layout
    client = MlflowClient(run.tracking_uri)
    meta = read_generator(run.tracking_uri, run.run_id, layout.generator(run.name))
    steps, seconds = int(meta.get("steps", 0)), meta.get("train_seconds")
    summary = {
        "model": run.name,
        "arch": run.cfg.arch,
        "run_id": run.run_id,
        "config_hash": run.config_hash,
        "data_fingerprint": run.data_fingerprint,
        "code_fingerprint": run.code_fingerprint,
        "resumed": run.resumed,
        "restored_from_mlflow": not cluster,
        "steps": steps,
        "global_batch": run.cfg.batch_size,
        "images_seen": steps * run.cfg.batch_size,
        "train_seconds": seconds,  # on the workers, from building the networks to the logged generator
        "images_per_s_incl_setup": round(steps * run.cfg.batch_size / seconds, 3) if seconds else None,
        "resolution": run.cfg.resolution,
        "num_workers": params.train.num_workers,
        "use_gpu": params.train.use_gpu,
        "ray": cluster,
        "describe": meta.get("describe", {}),
    }
    layout.train_summary(run.name).write_text(json.dumps(summary, indent=1, default=str))
    client.log_dict(run.run_id, summary, TRAIN_SUMMARY_ARTIFACT)
    client.set_terminated(run.run_id)
    return summary


def train_models(params: Params, names: list[str]) -> list[dict[str, Any]]:
    """Train models ``names`` (those whose configuration finished before are restored instead) in one
    Ray Train run; write each generator and ``train.json``. Returns their summaries, in order."""
    runs = [start(params, name) for name in names]
    todo = [r for r in runs if not r.finished]
    for r in runs:
        log.info(
            "%s: %s", r.name, "trains" if not r.finished else f"finished before, restored from MLflow run {r.run_id}"
        )
    cluster, ray_dir = fit(params, todo, _ray_run_name(runs)) if todo else ({}, None)
    summaries = [export(params, r, cluster if r in todo else {}) for r in runs]
    if ray_dir is not None and not params.train.keep_checkpoints:
        _drop_checkpoints(ray_dir)
    for s in summaries:
        log.info(
            "%s: %d steps (%s s on the workers) -> %s",
            s["model"],
            s["steps"],
            s["train_seconds"],
            params.layout.model_dir(s["model"]),
        )
    return summaries


def train_model(params: Params, name: str) -> dict[str, Any]:
    """Train one model (or restore its finished run): :func:`train_models` for a single name."""
    return train_models(params, [name])[0]


def _drop_checkpoints(ray_dir: Path) -> None:
    """Delete a finished run's Ray directory: its resume checkpoints (generator + discriminator + Adam
    moments, up to 2 GB each) and the checkpoint manager's index of them. The exported generator and the
    MLflow run hold everything used afterwards; a rerun of the same configuration restores from MLflow."""
    if ray_dir.is_dir():  # local or NFS storage; a remote store keeps its own lifecycle rules
        shutil.rmtree(ray_dir, ignore_errors=True)
