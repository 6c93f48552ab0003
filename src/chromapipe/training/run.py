"""The train stage's driver: connect to Ray, run the TorchTrainer, export the generator.

The Ray run is named after a hash of everything that determines the training (model config, data
manifest, seed, world size, the model and training code): rerunning an interrupted stage resumes that
run's last checkpoint, while a change of params or code gets a new name and starts fresh instead of
silently resuming an old run.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import ray
import torch
from mlflow.tracking import MlflowClient
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from chromapipe.config import Params, artifact_location, config_hash, resolve_path, to_dict, tracking_uri
from chromapipe.data.shards import read_manifest
from chromapipe.hashing import source_fingerprint
from chromapipe.models.checkpoint import save_generator
from chromapipe.models.registry import build_recipe
from chromapipe.training.loop import CHECKPOINT_FILE, train_loop_per_worker
from chromapipe.training.tracking import find_or_create_run, flatten, set_tags

log = logging.getLogger(__name__)


def _connect_ray(num_cpus_needed: float) -> bool:
    """Join the cluster named by RAY_ADDRESS, or start a local instance. Returns True if we started it."""
    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS")
    if address:
        log.info("connecting to the Ray cluster at %s", address)
        ray.init(address=address, log_to_driver=True)
        return False
    ray.init(
        num_cpus=max(os.cpu_count() or 1, int(num_cpus_needed + 0.999)),
        include_dashboard=False,
        log_to_driver=True,
        runtime_env={"worker_process_setup_hook": quiet_local_ray},
    )
    return True


def quiet_local_ray() -> None:
    """Runs in every Ray worker of a local instance. Without the dashboard (not installed: ray[train] only)
    Ray Train's placement-group cleaner cannot reach the State API and warns about it every few seconds
    for the whole run; the warning says nothing about training, so it is silenced there."""
    logging.getLogger("ray.train.v2._internal.execution.controller.placement_group_cleaner").setLevel(logging.ERROR)


def _data_fingerprint(manifest: dict[str, Any]) -> dict[str, Any]:
    return {"params": manifest["params"], "shards": [s["sha256"] for s in manifest["splits"]["train"]["shards"]]}


def _code_fingerprint(recipe: Any) -> str:
    """The training and model code, plus the recipe's own module (a ``module:Class`` arch may live outside)."""
    package = Path(__file__).resolve().parents[1]
    return source_fingerprint(package / "training", package / "models", Path(inspect.getfile(type(recipe))).resolve())


def train_model(params: Params, name: str) -> dict[str, Any]:
    """Train model ``name``; write ``<train.out>/<name>/generator.pt`` and ``train.json``; return the summary."""
    cfg = params.model(name)
    tc = params.train
    data_root = resolve_path(params.data.out)
    manifest = read_manifest(data_root)
    recipe = build_recipe(cfg)
    h = config_hash(cfg, _data_fingerprint(manifest), params.seed, tc.num_workers, tc.use_gpu, _code_fingerprint(recipe))
    uri = tracking_uri(params)
    client = MlflowClient(uri)
    run_id, resumed = find_or_create_run(
        client,
        params.tracking.experiment,
        name,
        h,
        params={"model": to_dict(cfg), "train": to_dict(tc), "data": manifest["params"], "seed": params.seed,
                "data_counts": {k: v["n_images"] for k, v in manifest["splits"].items()}},
        tags={"chromapipe.arch": cfg.arch},
        artifact_location=artifact_location(params),
    )
    set_tags(uri, run_id, {f"chromapipe.{k}": v for k, v in flatten(recipe.describe()).items()})

    started_ray = _connect_ray(tc.num_workers * tc.resources_per_worker.get("CPU", 1.0))
    t0 = time.time()
    try:
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config={
                "name": name,
                "model": to_dict(cfg),
                "seed": params.seed,
                "data_root": str(data_root),
                "tracking_uri": uri,
                "run_id": run_id,
                "log_every": tc.log_every,
                "image_every": tc.image_every,
                "checkpoint_every": tc.checkpoint_every,
                "amp": tc.amp,
                "loader_workers": tc.loader_workers,
                "torch_threads": tc.torch_threads,
            },
            scaling_config=ScalingConfig(num_workers=tc.num_workers, use_gpu=tc.use_gpu, resources_per_worker=dict(tc.resources_per_worker)),
            run_config=RunConfig(
                name=f"{name}-{h}",
                storage_path=str(resolve_path(tc.storage_path)),
                failure_config=FailureConfig(max_failures=tc.max_failures),
                checkpoint_config=CheckpointConfig(num_to_keep=2),
            ),
        )
        result = trainer.fit()
        cluster = {"gcs_address": ray.get_runtime_context().gcs_address, "nodes": sum(1 for n in ray.nodes() if n["Alive"])}
    finally:
        if started_ray:
            ray.shutdown()
    wall = time.time() - t0
    if result.checkpoint is None:
        raise RuntimeError(f"training {name} produced no checkpoint (see the Ray logs above)")
    with result.checkpoint.as_directory() as d:
        state = torch.load(Path(d) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    G = recipe.build_generator()
    G.load_state_dict(state["G"])
    out_dir = resolve_path(tc.out) / name
    generator_file = out_dir / "generator.pt"
    describe = recipe.describe()
    save_generator(generator_file, name, cfg, G, meta={"run_id": run_id, "config_hash": h, "steps": int(state["step"]), "describe": describe})
    client.log_artifact(run_id, str(generator_file), artifact_path="generator")
    client.log_dict(run_id, preprocessing_spec(cfg, describe), "generator/preprocessing.json")
    images = int(state["step"]) * cfg.batch_size * tc.num_workers
    summary = {
        "model": name,
        "arch": cfg.arch,
        "run_id": run_id,
        "config_hash": h,
        "resumed": resumed,
        "steps": int(state["step"]),
        "wall_s": round(wall, 1),
        "images_per_s_incl_startup": round(images / wall, 3),
        "resolution": cfg.resolution,
        "num_workers": tc.num_workers,
        "use_gpu": tc.use_gpu,
        "ray": cluster,
        "describe": describe,
    }
    (out_dir / "train.json").write_text(json.dumps(summary, indent=1, default=str))
    client.log_dict(run_id, summary, "train.json")
    client.set_terminated(run_id)
    log.info("trained %s: %d steps in %.1fs -> %s", name, summary["steps"], wall, generator_file)
    return summary


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
