"""The training input of one worker: shards → DataLoader → device batches. No Ray here.

Why a module of its own: the Ray Train loop (``training.loop``) and the input benchmark
(``bench/bench_input.py``, which also runs on machines without Ray or MLflow) must feed the step the same
way. What makes the input keep up with a GPU is all here: shards are memory-mapped (``LabShardDataset``
opens each ``.npy`` with ``mmap_mode="r"``, so a loader process touches only the images it reads),
``train.loader_workers`` processes decode in parallel and stay alive between epochs, batches land in
pinned host memory and are copied to the device without blocking the host, a GPU receives the images
as stored in the shards (3 or 6 bytes per pixel, not float32's 12) and decodes, resizes and flips them
batch by batch (``train.input_decode``), and a GPU runs cuDNN's autotuner when ``train.cudnn_benchmark``
is set (the input size never changes during training).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler

from chromapipe.config import ModelConfig, TrainConfig
from chromapipe.data.shards import LabShardDataset
from chromapipe.models.base import Batch, Recipe
from chromapipe.training.performance import batch_to_channels_last
from chromapipe.training.schedule import per_worker_batch


def configure_device(device: torch.device, tc: TrainConfig) -> None:
    """Process-wide switches for training on ``device``: cuDNN's autotuner on a GPU when asked.

    ``torch.backends.cudnn.benchmark`` times the available convolution algorithms on the first call of
    each input shape and keeps the fastest; training's shapes are fixed, so that cost is paid once. The
    chosen algorithms may differ from run to run (results then differ by float rounding), which is why
    it is a setting and not always on.
    """
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = tc.cudnn_benchmark


def decode_on_device(device: torch.device, tc: TrainConfig) -> bool:
    """``train.input_decode`` for ``device``: "auto" decodes on a GPU, in the loader on a CPU (there the
    loader's worker processes are the parallel decoders and the training threads are busy)."""
    return tc.input_decode == "device" or (tc.input_decode == "auto" and device.type == "cuda")


def build_loader(
    data_root: Path, cfg: ModelConfig, tc: TrainConfig, seed: int, rank: int, world: int, device: torch.device
) -> tuple[LabShardDataset, DistributedSampler, DataLoader]:
    """This rank's share of the training split: each of ``world`` ranks draws ``batch_size / world`` images
    per step from a disjoint shuffle (``DistributedSampler``, reshuffled per epoch by :func:`infinite`)."""
    dataset = LabShardDataset(
        data_root, "train", resolution=cfg.resolution, hflip=cfg.hflip, decode=not decode_on_device(device, tc)
    )
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
    workers = tc.loader_workers
    loader = DataLoader(
        dataset,
        batch_size=per_worker_batch(cfg, world),
        sampler=sampler,
        drop_last=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )
    return dataset, sampler, loader


def infinite(loader: DataLoader, sampler: DistributedSampler, start_epoch: int) -> Iterator[dict[str, torch.Tensor]]:
    """The loader's batches epoch after epoch (a resumed run starts at the epoch its step falls in)."""
    epoch = start_epoch
    while True:
        sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> Batch:
    """The batch on ``device``; from pinned memory the copy does not block the host."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def next_batch(
    batches: Iterator[dict[str, torch.Tensor]],
    dataset: LabShardDataset,
    recipe: Recipe,
    device: torch.device,
    channels_last: bool,
) -> Batch:
    """The next training batch on ``device`` as the recipe's losses want it: decoded there when the loader
    ships stored images, NHWC with ``train.channels_last``."""
    batch = to_device(next(batches), device)
    if not dataset.decode:
        batch = dataset.decode_batch(batch)
    batch = recipe.prepare_batch(batch)
    return batch_to_channels_last(batch) if channels_last else batch
