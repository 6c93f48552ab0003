"""The per-worker training function that Ray Train runs on every worker: one loop for every recipe.

One Ray Train run trains a list of models, one after another, on the same worker group: the worker
processes, the process group and Ray's controller are set up once (tens of seconds on a small machine,
more than a sample model's training), and on a cluster the group stays placed between models. Each model
is trained exactly as a run of its own would train it (seeded per model, its own data, optimisers and
MLflow run); rank 0 logs its generator to MLflow when its last step is done (``training.export``).
After a failure Ray restarts the group from the latest checkpoint: models whose generator is logged are
skipped, and the checkpoint resumes only the model it belongs to (it records its MLflow run id).

What is here is what the papers share: Adam with their betas, constant or cosine learning rate,
D updated every iteration and G every ``n_critic``-th (5 for WGAN-GP), separate DDP wrappers for G and
D, optional bf16 autocast on GPU, checkpoints every ``checkpoint_every`` steps (resumed automatically by
Ray on restart), validation and MLflow logging from rank 0. Losses come from the recipe.

The batch is global: each of the N workers draws ``batch_size / N`` images per step, so steps and
schedules are the same for any number of workers. Losses stay on the device between log steps (no host
synchronisation per step); a non-finite generator or discriminator loss stops training at the next log step.
"""

from __future__ import annotations

import gc
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs
import ray.train
import ray.train.torch
import torch
from mlflow.tracking import MlflowClient
from torch import nn

from chromapipe.config import ModelConfig, TrainConfig
from chromapipe.data.shards import LabShardDataset
from chromapipe.layout import generator_logged
from chromapipe.models.base import Recipe, unwrap
from chromapipe.models.registry import build_recipe
from chromapipe.training.batches import build_loader, configure_device, infinite, next_batch
from chromapipe.training.export import log_generator
from chromapipe.training.performance import CompileWatch, apply_to_pair
from chromapipe.training.schedule import make_scheduler, total_steps
from chromapipe.training.step import NonFiniteGuard, build_optimizers, logs_to_floats, train_step
from chromapipe.training.tracking import RunLogger, flatten
from chromapipe.training.validation import Validator

log = logging.getLogger("chromapipe.train")

CHECKPOINT_FILE = "state.pt"
PREVIEW_IMAGES = 4


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


@dataclass
class Networks:
    """The state a checkpoint holds."""

    G: nn.Module
    D: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    sched_g: torch.optim.lr_scheduler.LRScheduler
    sched_d: torch.optim.lr_scheduler.LRScheduler

    def save(self, path: Path, step: int, run_id: str) -> None:
        torch.save(
            {
                "run_id": run_id,  # the model this state belongs to
                "G": unwrap(self.G).state_dict(),
                "D": unwrap(self.D).state_dict(),
                "opt_g": self.opt_g.state_dict(),
                "opt_d": self.opt_d.state_dict(),
                "sched_g": self.sched_g.state_dict(),
                "sched_d": self.sched_d.state_dict(),
                "step": step,
                "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            path,
        )

    def restore(self, state: dict[str, Any]) -> int:
        unwrap(self.G).load_state_dict(state["G"])
        unwrap(self.D).load_state_dict(state["D"])
        for key in ("opt_g", "opt_d", "sched_g", "sched_d"):
            getattr(self, key).load_state_dict(state[key])
        torch.set_rng_state(state["rng_cpu"].cpu())
        if state["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["rng_cuda"]])
        return int(state["step"])


def _report(metrics: dict[str, float], save: Callable[[Path], None] | None, step: int) -> None:
    """Every rank reports the same number of times; only rank 0 attaches the checkpoint.

    On a local or shared (NFS) storage path rank 0 writes the checkpoint straight into Ray's run
    directory: a ChromaGAN state with its Adam moments is 2 GB, and the default write-to-temp-then-copy
    would need twice that on disk. Remote storage (S3, GCS) goes through a temporary directory.
    """
    if save is None:
        ray.train.report(metrics)
        return
    storage = ray.train.get_context().get_storage()
    if isinstance(storage.storage_filesystem, pyarrow.fs.LocalFileSystem):
        directory = Path(storage.experiment_fs_path) / f"checkpoint_{step:09d}"
        directory.mkdir(parents=True, exist_ok=True)
        save(directory / CHECKPOINT_FILE)
        checkpoint = ray.train.Checkpoint.from_directory(directory)
        ray.train.report(
            metrics, checkpoint=checkpoint, checkpoint_upload_mode=ray.train.CheckpointUploadMode.NO_UPLOAD
        )
        return
    with tempfile.TemporaryDirectory() as tmp:
        save(Path(tmp) / CHECKPOINT_FILE)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def _build_networks(recipe: Recipe, cfg: ModelConfig, tc: TrainConfig, steps: int) -> Networks:
    G, D = apply_to_pair(
        recipe,
        recipe.build_generator(),
        recipe.build_discriminator(),
        channels_last=tc.channels_last,
        compile=tc.compile,
        compile_mode=tc.compile_mode,
    )
    G, D = ray.train.torch.prepare_model(G), ray.train.torch.prepare_model(D)
    opt_g, opt_d = build_optimizers(G, D, cfg)
    return Networks(G, D, opt_g, opt_d, make_scheduler(opt_g, cfg, steps), make_scheduler(opt_d, cfg, steps))


class RankZero:
    """What only rank 0 does: MLflow logging, preview grids and validation."""

    def __init__(self, wc: WorkerConfig, recipe: Recipe, device: torch.device) -> None:
        self.wc, self.recipe = wc, recipe
        self.logger = RunLogger(wc.tracking_uri, wc.run_id)
        # provenance from where the networks were built (which weights loaded), not from the driver
        self.logger.set_tags({f"chromapipe.{k}": v for k, v in flatten(recipe.describe()).items()})
        preview = LabShardDataset(wc.data_root, "val", limit=PREVIEW_IMAGES)
        if len(preview) == 0:
            preview = LabShardDataset(wc.data_root, "train", limit=PREVIEW_IMAGES)
        self.preview = {k: torch.stack([preview[i][k] for i in range(len(preview))]).to(device) for k in ("L", "ab")}
        self.validator = None
        if wc.train.validate_every:
            validator = Validator(wc.data_root, recipe, wc.train.validate_images, device)
            if validator.n:
                self.validator = validator
            else:
                log.warning("%s: the val split is empty: no validation during training", wc.name)

    def start(self, step: int) -> None:
        """The gray baseline's validation values, once per run (the reference lines)."""
        if self.validator is not None and step == 0:
            self.logger.log_metrics({f"val_gray/{k}": v for k, v in self.validator.gray().items()}, 0)

    def after_step(self, G: nn.Module, step: int, steps: int) -> None:
        tc = self.wc.train
        last = step == steps
        if step % tc.image_every == 0 or last:
            was_training = G.training
            G.eval()
            ab = self.recipe.predict(unwrap(G), self.preview["L"])["ab"]
            G.train(was_training)
            self.logger.log_preview(self.preview["L"], ab, self.preview["ab"], step)
        if self.validator is not None and (step % tc.validate_every == 0 or last):
            scores = self.validator(unwrap(G))
            self.logger.log_metrics({f"val/{k}": v for k, v in scores.items()}, step)
            log.info("%s step %d validation: %s", self.wc.name, step, {k: round(v, 4) for k, v in scores.items()})


def _resume(checkpoint: ray.train.Checkpoint | None, wc: WorkerConfig, nets: Networks, device: torch.device) -> int:
    """The step to start from: the checkpoint's, if it belongs to this model; else 0."""
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as d:
        state = torch.load(Path(d) / CHECKPOINT_FILE, map_location=device, weights_only=True)
    if state.get("run_id") != wc.run_id:
        return 0
    step = nets.restore(state)
    log.info("%s: resumed from checkpoint at step %d", wc.name, step)
    return step


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


def train_one(wc: WorkerConfig, checkpoint: ray.train.Checkpoint | None) -> None:
    """Train one model on this worker (one DDP rank) and, on rank 0, log its generator."""
    t0 = time.time()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    cfg, tc = wc.model, wc.train
    if tc.torch_threads:
        torch.set_num_threads(tc.torch_threads)
    torch.manual_seed(wc.seed + rank)
    device = ray.train.torch.get_device()
    recipe: Recipe = build_recipe(cfg)
    recipe.setup(device)

    configure_device(device, tc)
    dataset, sampler, loader = build_loader(wc.data_root, cfg, tc, wc.seed, rank, world, device)
    if len(loader) == 0:
        raise ValueError(
            f"the global batch {cfg.batch_size} exceeds the {len(dataset)} training images: "
            f"lower models.{wc.name}.batch_size"
        )
    steps = total_steps(cfg, len(dataset))
    nets = _build_networks(recipe, cfg, tc, steps)
    step = _resume(checkpoint, wc, nets, device)

    amp = tc.amp and device.type == "cuda"
    chief = RankZero(wc, recipe, device) if rank == 0 else None
    if chief:
        chief.start(step)
    guard = NonFiniteGuard(step)
    batches = infinite(loader, sampler, start_epoch=step // len(loader))
    window_start, window_images, logs, values = time.time(), 0, {}, {}
    watch = CompileWatch(device.type, tc.compile_mode) if tc.compile else None  # graph breaks, skipped CUDA graphs
    nets.G.train()
    nets.D.train()
    while step < steps:
        batch = next_batch(batches, dataset, recipe, device, tc.channels_last)
        g_step = (step + 1) % cfg.n_critic == 0  # n_critic D steps, on fresh batches, per G step
        logs.update(train_step(recipe, nets.G, nets.D, nets.opt_g, nets.opt_d, batch, g_step, amp))
        guard.update(logs)
        nets.sched_g.step()
        nets.sched_d.step()
        step += 1
        window_images += cfg.batch_size
        last = step == steps
        log_now = step % tc.log_every == 0 or last
        save_now = step % tc.checkpoint_every == 0 and not last  # the last step exports the generator instead
        if log_now or save_now:
            guard.check(step)  # one host sync: losses are read only here
            values = logs_to_floats(logs)
        if log_now:
            elapsed = max(time.time() - window_start, 1e-9)
            rate = window_images / elapsed
            compiled, problems = watch.look() if watch else ({}, [])
            for problem in problems:  # silent otherwise, unless TORCH_LOGS asks
                log.warning("%s step %d: %s", wc.name, step, problem)
            if chief:
                chief.logger.log_metrics(
                    {f"train/{k}": v for k, v in values.items()}
                    | {"train/lr_g": nets.sched_g.get_last_lr()[0], "train/images_per_s": rate}
                    | {f"compile/{k}": v for k, v in compiled.items()},
                    step,
                )
                eta = (steps - step) * elapsed / max(1, window_images / cfg.batch_size)
                log.info(
                    "%s step %d/%d  g=%.4f d=%.4f  %.2f img/s  eta %.0fs",
                    wc.name,
                    step,
                    steps,
                    values.get("g_total", float("nan")),
                    values["d_total"],
                    rate,
                    eta,
                )
            window_start, window_images = time.time(), 0
        if chief:
            chief.after_step(nets.G, step, steps)
        if save_now:
            save = (lambda p: nets.save(p, step, wc.run_id)) if rank == 0 else None  # noqa: B023 (called now)
            _report({"step": step, **values}, save, step)
    if chief:
        meta = {
            "run_id": wc.run_id,
            "config_hash": wc.config_hash,
            "steps": step,
            "describe": recipe.describe(),
            "train_seconds": round(time.time() - t0, 1),
        }
        log_generator(chief.logger.client, wc.run_id, wc.name, cfg, unwrap(nets.G), meta)
    ray.train.report({"step": step, **values})  # every rank: the model's end is a sync point for the group
