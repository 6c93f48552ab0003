"""The per-worker training function that Ray Train runs on every worker: one loop for every recipe.

What is here is what the papers share: Adam with their betas, constant or cosine learning rate,
D updated every iteration and G every ``n_critic``-th (5 for WGAN-GP), separate DDP wrappers for G and
D, optional bf16 autocast on GPU, checkpoints every ``checkpoint_every`` steps (resumed automatically by
Ray on restart), and MLflow logging from rank 0. Losses come from the recipe.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.fs
import ray.train
import ray.train.torch
import torch
from torch.utils.data import DataLoader, DistributedSampler

from chromapipe.config import ModelConfig, build_dataclass
from chromapipe.data.shards import LabShardDataset
from chromapipe.models.base import Batch, Recipe, unwrap
from chromapipe.models.registry import build_recipe
from chromapipe.training.step import train_step
from chromapipe.training.tracking import RunLogger

log = logging.getLogger("chromapipe.train")

CHECKPOINT_FILE = "state.pt"


def model_config_from_dict(raw: dict[str, Any]) -> ModelConfig:
    raw = dict(raw)
    raw["betas"] = tuple(raw["betas"])
    return build_dataclass(ModelConfig, raw, "model")


def total_steps(cfg: ModelConfig, n_train: int, world_batch: int) -> int:
    """Training length in iterations: ``steps`` as given, or ``epochs`` passes over the training split."""
    if cfg.steps is not None:
        return cfg.steps
    assert cfg.epochs is not None
    return max(1, math.ceil(cfg.epochs * n_train / world_batch))


def make_scheduler(opt: torch.optim.Optimizer, cfg: ModelConfig, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps), eta_min=cfg.lr_min)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _infinite(loader: DataLoader, sampler: DistributedSampler, start_epoch: int):
    epoch = start_epoch
    while True:
        sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def _save_state(path: Path, G, D, opt_g, opt_d, sched_g, sched_d, step: int) -> None:
    torch.save(
        {
            "G": unwrap(G).state_dict(),
            "D": unwrap(D).state_dict(),
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(),
            "sched_g": sched_g.state_dict(),
            "sched_d": sched_d.state_dict(),
            "step": step,
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        },
        path,
    )


def _load_state(path: Path, G, D, opt_g, opt_d, sched_g, sched_d, device: torch.device) -> int:
    state = torch.load(path, map_location=device, weights_only=True)
    unwrap(G).load_state_dict(state["G"])
    unwrap(D).load_state_dict(state["D"])
    opt_g.load_state_dict(state["opt_g"])
    opt_d.load_state_dict(state["opt_d"])
    sched_g.load_state_dict(state["sched_g"])
    sched_d.load_state_dict(state["sched_d"])
    torch.set_rng_state(state["rng_cpu"].cpu())
    if state["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["rng_cuda"]])
    return int(state["step"])


def _report(metrics: dict[str, float], save: Any | None, step: int) -> None:
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
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_upload_mode=ray.train.CheckpointUploadMode.NO_UPLOAD)
        return
    with tempfile.TemporaryDirectory() as tmp:
        save(Path(tmp) / CHECKPOINT_FILE)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point. ``config`` holds only JSON-able values (built by ``training.run``)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    if config.get("torch_threads"):
        torch.set_num_threads(config["torch_threads"])
    cfg = model_config_from_dict(config["model"])
    torch.manual_seed(config["seed"] + rank)
    device = ray.train.torch.get_device()
    recipe: Recipe = build_recipe(cfg)
    recipe.setup(device)

    dataset = LabShardDataset(Path(config["data_root"]), "train", resolution=cfg.resolution, hflip=cfg.hflip)
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=config["seed"], drop_last=True)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, drop_last=True, num_workers=config["loader_workers"], pin_memory=device.type == "cuda")
    if len(loader) == 0:
        raise ValueError(f"batch_size {cfg.batch_size} x {world} workers exceeds the {len(dataset)} training images: lower models.*.batch_size")
    steps = total_steps(cfg, len(dataset), cfg.batch_size * world)

    G = ray.train.torch.prepare_model(recipe.build_generator())
    D = ray.train.torch.prepare_model(recipe.build_discriminator())
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=cfg.betas, fused=True)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=cfg.betas, fused=True)
    sched_g, sched_d = make_scheduler(opt_g, cfg, steps), make_scheduler(opt_d, cfg, steps)

    step = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            step = _load_state(Path(d) / CHECKPOINT_FILE, G, D, opt_g, opt_d, sched_g, sched_d, device)
        log.info("resumed from checkpoint at step %d", step)

    amp = bool(config["amp"]) and device.type == "cuda"
    logger = RunLogger(config["tracking_uri"], config["run_id"]) if rank == 0 else None
    preview = None
    if rank == 0:
        val = LabShardDataset(Path(config["data_root"]), "val", resolution=cfg.resolution, limit=4)
        if len(val) == 0:
            val = LabShardDataset(Path(config["data_root"]), "train", resolution=cfg.resolution, limit=4)
        preview = {k: torch.stack([val[i][k] for i in range(len(val))]).to(device) for k in ("L", "ab")}

    batches = _infinite(loader, sampler, start_epoch=step // max(1, len(loader)))
    window_start, window_images, logs = time.time(), 0, {}
    while step < steps:
        G.train()
        D.train()
        batch = recipe.prepare_batch(_to_device(next(batches), device))
        g_step = (step + 1) % cfg.n_critic == 0  # n_critic D steps, on fresh batches, per G step
        logs.update(train_step(recipe, G, D, opt_g, opt_d, batch, g_step, amp))
        sched_g.step()
        sched_d.step()
        step += 1
        window_images += cfg.batch_size * world

        if not math.isfinite(logs["d_total"]):
            raise FloatingPointError(f"step {step}: discriminator loss is {logs['d_total']}; lower the learning rate")
        if step % config["log_every"] == 0 or step == steps:
            elapsed = max(time.time() - window_start, 1e-9)
            rate = window_images / elapsed
            if logger:
                logger.log_metrics({f"train/{k}": v for k, v in logs.items()} | {"train/lr_g": sched_g.get_last_lr()[0], "train/images_per_s": rate}, step)
                eta = (steps - step) * (elapsed / max(1, window_images / (cfg.batch_size * world)))
                log.info("%s step %d/%d  g=%.4f d=%.4f  %.2f img/s  eta %.0fs", config["name"], step, steps, logs.get("g_total", float("nan")), logs["d_total"], rate, eta)
            window_start, window_images = time.time(), 0
        if logger and preview is not None and (step % config["image_every"] == 0 or step == steps):
            G.eval()
            ab = recipe.colorize(unwrap(G), preview["L"])
            logger.log_preview(preview["L"], ab, preview["ab"], step)
        if step % config["checkpoint_every"] == 0 or step == steps:
            save = (lambda p: _save_state(p, G, D, opt_g, opt_d, sched_g, sched_d, step)) if rank == 0 else None
            _report({"step": step, **{k: float(v) for k, v in logs.items()}}, save, step)
