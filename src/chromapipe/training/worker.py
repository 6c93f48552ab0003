"""The function Ray Train runs on every worker: the training core (``training.trainer``) in a Ray worker group.

One Ray Train run trains a list of models, one after another, on the same worker group: the worker
processes, the process group and Ray's controller are set up once (tens of seconds on a small machine, more
than a sample model's training), and on a cluster the group stays placed between models. Each model is
trained exactly as a run of its own would train it (seeded per model, its own data, optimisers and MLflow
run); rank 0 logs its generator to MLflow when its last step is done (``training.export``). After a failure
Ray restarts the group from the latest checkpoint: models whose generator is logged are skipped, and the
checkpoint resumes only the model it belongs to (it records its MLflow run id).

What only Ray adds to the core is here: the rank and world size, DDP (``prepare_model``), checkpoints
reported to Ray (:class:`RayCheckpoints`) and restored from it. The batch is global: each of the N workers
takes its ``batch_size / N`` slice of every step's images, BatchNorm statistics are synchronised
(``train.sync_batchnorm``) and per-sample random draws are made for the whole global batch, so N workers
train what one worker trains. A checkpoint holds everything the next steps depend on — weights, Adam
moments, schedules, the step (which fixes the data position and the n_critic phase) and every rank's random
states — so a resumed run takes exactly the steps of the run it replaces.
"""

from __future__ import annotations

import gc
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs
import ray.train
import ray.train.torch
import torch
from mlflow.tracking import MlflowClient

from chromapipe.config import ModelConfig, TrainConfig
from chromapipe.layout import generator_logged
from chromapipe.models.base import Recipe, unwrap
from chromapipe.models.randomness import batch_split
from chromapipe.models.registry import build_recipe
from chromapipe.training.batches import build_loader, configure_device, device_batches, training_dataset
from chromapipe.training.export import log_generator
from chromapipe.training.schedule import total_steps
from chromapipe.training.tracking import RunLogger, RunTracking
from chromapipe.training.trainer import (
    Hook,
    Networks,
    ProgressLog,
    build_networks,
    capture_rng,
    fit,
    restore_rng,
    seed_everything,
)

log = logging.getLogger("chromapipe.train")

STATE_FILE = "state.pt"  # rank 0: the networks and the step
RNG_FILE = "rng-rank{rank}.pt"  # every rank: its random states


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a training worker needs, typed; Ray pickles it to every worker as it is."""

    name: str
    model: ModelConfig
    train: TrainConfig
    seed: int
    data_root: Path
    tracking_uri: str
    run_id: str
    config_hash: str


# -- checkpoints ---------------------------------------------------------------------------------------------------
def _checkpoint_directory(step: int) -> Path | None:
    """Where this step's checkpoint is written in place: the run directory on local or shared (NFS) storage;
    ``None`` for remote storage (S3, GCS), which goes through a temporary directory and Ray's upload.

    In place because a ChromaGAN state with its Adam moments is 2 GB, and Ray's default write-to-temp-then-copy
    would need twice that on disk."""
    storage = ray.train.get_context().get_storage()
    if isinstance(storage.storage_filesystem, pyarrow.fs.LocalFileSystem):
        directory = Path(storage.experiment_fs_path) / f"checkpoint_{step:09d}"
        directory.mkdir(parents=True, exist_ok=True)
        return directory
    return None


class RayCheckpoints(Hook):
    """Every ``train.checkpoint_every`` steps: rank 0 writes the networks and the step, every rank its random
    states, and every rank reports to Ray (Ray Train needs the same number of reports from each rank)."""

    def __init__(self, run_id: str, rank: int) -> None:
        self.run_id, self.rank = run_id, rank

    def _write(self, directory: Path, step: int, nets: Networks) -> None:
        torch.save(capture_rng(), directory / RNG_FILE.format(rank=self.rank))
        if self.rank == 0:
            torch.save({"run_id": self.run_id, "step": step, "networks": nets.state_dict()}, directory / STATE_FILE)

    def on_checkpoint(self, step: int, values: dict[str, float], nets: Networks) -> None:
        metrics = {"step": step, **values}
        directory = _checkpoint_directory(step)
        if directory is not None:
            self._write(directory, step, nets)
            checkpoint = ray.train.Checkpoint.from_directory(directory) if self.rank == 0 else None
            ray.train.report(
                metrics, checkpoint=checkpoint, checkpoint_upload_mode=ray.train.CheckpointUploadMode.NO_UPLOAD
            )
            return
        with (
            tempfile.TemporaryDirectory() as tmp
        ):  # remote storage: every rank's files are uploaded into one checkpoint
            self._write(Path(tmp), step, nets)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def _resume(checkpoint: ray.train.Checkpoint | None, wc: WorkerConfig, nets: Networks, rank: int) -> int:
    """Restore the checkpoint if it belongs to this model (else start at 0); returns the step to continue from."""
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as d:
        state = torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=True)
        if state.get("run_id") != wc.run_id:
            return 0
        rng_file = Path(d) / RNG_FILE.format(rank=rank)
        if not rng_file.exists():
            raise FileNotFoundError(f"{wc.name}: the checkpoint has no random states of rank {rank} ({rng_file.name})")
        rng = torch.load(rng_file, weights_only=True)
    nets.load_state_dict(state["networks"])
    restore_rng(rng)
    log.info("%s: resumed from checkpoint at step %d", wc.name, state["step"])
    return int(state["step"])


# -- the worker ----------------------------------------------------------------------------------------------------
def train_loop_per_worker(configs: list[WorkerConfig]) -> None:
    """Ray Train entry point: ``train_loop_config`` is the list of models to train, in order."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    checkpoint = ray.train.get_checkpoint()
    for wc in configs:
        if generator_logged(MlflowClient(wc.tracking_uri), wc.run_id):
            log.info("%s: its generator is logged already (trained before a restart)", wc.name)
            continue
        train_one(wc, checkpoint)
        checkpoint = None  # the latest checkpoint can only be the first unfinished model's
        gc.collect()  # the next model must not wait for this one's networks, optimisers and loader
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def train_one(wc: WorkerConfig, checkpoint: ray.train.Checkpoint | None) -> Networks:
    """Train one model on this worker (one DDP rank) and, on rank 0, log its generator. Returns the trained
    networks (for callers that inspect them, e.g. tests)."""
    t0 = time.time()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    cfg, tc = wc.model, wc.train
    if tc.torch_threads:
        torch.set_num_threads(tc.torch_threads)
    seed_everything(wc.seed)  # the same on every rank: initialisation and per-sample draws follow one stream
    device = ray.train.torch.get_device()
    recipe: Recipe = build_recipe(cfg)
    recipe.setup(device)
    configure_device(device, tc)
    dataset = training_dataset(wc.data_root, cfg, tc, device)
    if len(dataset) < cfg.batch_size:
        raise ValueError(
            f"the global batch {cfg.batch_size} exceeds the {len(dataset)} training images: "
            f"lower models.{wc.name}.batch_size"
        )
    steps = total_steps(cfg, len(dataset))
    nets = build_networks(recipe, cfg, tc, steps, device, world_size=world, wrap=ray.train.torch.prepare_model)
    step = _resume(checkpoint, wc, nets, rank)
    loader = build_loader(dataset, cfg, tc, seed=wc.seed, rank=rank, world_size=world, start_step=step, device=device)
    hooks: list[Hook] = [RayCheckpoints(wc.run_id, rank)]
    logger = RunLogger(wc.tracking_uri, wc.run_id) if rank == 0 else None
    if logger is not None:
        hooks += [ProgressLog(wc.name), RunTracking(wc.name, recipe, tc, logger, wc.data_root, device, step)]
    with batch_split(rank, world):
        result = fit(
            recipe,
            nets,
            device_batches(loader, dataset, recipe, device, tc.channels_last),
            steps=steps,
            start_step=step,
            n_critic=cfg.n_critic,
            images_per_step=cfg.batch_size,
            amp=tc.amp and device.type == "cuda",
            log_every=tc.log_every,
            checkpoint_every=tc.checkpoint_every,
            hooks=hooks,
        )
    if logger is not None:
        meta: dict[str, Any] = {
            "run_id": wc.run_id,
            "config_hash": wc.config_hash,
            "steps": steps,
            "describe": recipe.describe(),
            "train_seconds": round(time.time() - t0, 1),
        }
        log_generator(logger.client, wc.run_id, wc.name, cfg, unwrap(nets.G), meta)
    ray.train.report({"step": steps, **result.values})  # every rank: the model's end is a sync point for the group
    return nets
