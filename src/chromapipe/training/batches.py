"""The training input of one worker: shards → DataLoader → device batches. No Ray here.

Why a module of its own: the Ray worker and the benchmarks (``bench/bench_input.py`` runs on machines without
Ray or MLflow) must feed :func:`chromapipe.training.trainer.fit` the same way. Which images a worker gets at
each step is :mod:`chromapipe.training.sampling`'s. What makes the input keep up with a GPU is all here:
shards are memory-mapped (``LabShardDataset`` opens each ``.npy`` with ``mmap_mode="r"``, so a loader process
touches only the images it reads), ``train.loader_workers`` processes decode in parallel (the sampler is
endless: they are not restarted at epoch ends), batches land in pinned host memory and are copied to the
device without blocking the host, a GPU receives the images as stored in the shards (3 or 6 bytes per pixel,
not float32's 12) and decodes, resizes and flips them batch by batch (``train.input_decode``), and a GPU runs
cuDNN's autotuner when ``train.cudnn_benchmark`` is set (the input size never changes during training).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from chromapipe.config import ModelConfig, TrainConfig
from chromapipe.data.shards import LabShardDataset
from chromapipe.models.base import Batch, Recipe
from chromapipe.training.performance import batch_to_channels_last
from chromapipe.training.sampling import GlobalBatchSampler


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


def training_dataset(data_root: Path, cfg: ModelConfig, tc: TrainConfig, device: torch.device) -> LabShardDataset:
    """The training split at the model's resolution; items as stored when the device decodes them."""
    return LabShardDataset(data_root, "train", resolution=cfg.resolution, decode=not decode_on_device(device, tc))


def build_loader(
    dataset: LabShardDataset,
    cfg: ModelConfig,
    tc: TrainConfig,
    *,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    start_step: int = 0,
    device: torch.device,
) -> DataLoader:
    """This rank's batches, endlessly, from global step ``start_step`` on: rank ``rank`` of ``world_size`` takes
    its ``batch_size / world_size`` slice of each global batch (:class:`GlobalBatchSampler`: the same images and
    flips at each step whatever the number of workers, and a resumed run continues where it stopped)."""
    sampler = GlobalBatchSampler(
        len(dataset),
        cfg.batch_size,
        seed=seed,
        rank=rank,
        world_size=world_size,
        hflip=cfg.hflip,
        start_step=start_step,
    )
    workers = tc.loader_workers
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers > 0 else None,
        generator=torch.Generator(),  # the loader's own seed draw leaves the training RNG alone
    )


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> Batch:
    """The batch on ``device``; from pinned memory the copy does not block the host."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def device_batches(
    loader: Iterable[dict[str, torch.Tensor]],
    dataset: LabShardDataset,
    recipe: Recipe,
    device: torch.device,
    channels_last: bool,
) -> Iterator[Batch]:
    """The loader's batches on ``device`` as the recipe's losses want them: decoded there when the loader ships
    stored images, with the recipe's targets (``prepare_batch``), NHWC with ``train.channels_last``."""
    for raw in loader:
        batch = to_device(raw, device)
        if not dataset.decode:
            batch = dataset.decode_batch(batch)
        batch = recipe.prepare_batch(batch)
        yield batch_to_channels_last(batch) if channels_last else batch
