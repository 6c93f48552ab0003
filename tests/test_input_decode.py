"""Training input decoded on the device (``train.input_decode``): the loader ships the shards' stored bytes,
the training device decodes, resizes and flips the batch, and the step sees the batches the loader-decoded
path gives (the flips come with the sampler's draws).

On this CPU the two paths run the same arithmetic (the batched resize is the per-image one), so float16 and lab8
are asserted equal exactly; rgb8's colour matrix is one ``torch.mm`` over the whole batch instead of one per
image, asserted within 1e-4 L*a*b* units (equal on this CPU: reports/benchmarks.md). On a GPU the arithmetic is
the GPU's: the CUDA-only case compares against the CPU loader path within 1e-3 (the antialiased resize and the
cube root differ by float rounding there).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from chromapipe.config import DataConfig, ModelConfig, SplitConfig, TrainConfig
from chromapipe.data.prepare import prepare
from chromapipe.data.shards import LabShardDataset
from chromapipe.models.registry import build_recipe
from chromapipe.training.batches import build_loader, decode_on_device, device_batches, training_dataset

TINY = "tests.tiny_recipe:TinyRecipe"
SIZE, RESOLUTION = 48, 40  # stored size and the model's: the resize runs in both paths


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> dict[str, Path]:
    """The embedded sample photos prepared in every encoding (36 crops of 48²)."""
    root = tmp_path_factory.mktemp("encodings")
    base = dict(size=SIZE, crops_per_image=4, splits=SplitConfig(1.0, 0.0, 0.0), workers=1)
    for enc in ("float16", "lab8", "rgb8"):
        prepare(DataConfig(**base, encoding=enc), root / enc)
    return {enc: root / enc for enc in ("float16", "lab8", "rgb8")}


def _epoch(
    root: Path, input_decode: str, device: torch.device, loader_workers: int = 0, steps: int = 6
) -> list[dict[str, torch.Tensor]]:
    """``steps`` batches through the training loop's own input path (``build_loader`` → ``device_batches``)."""
    cfg = ModelConfig(arch=TINY, resolution=RESOLUTION, batch_size=4, steps=steps, hflip=True)
    tc = TrainConfig(input_decode=input_decode, loader_workers=loader_workers)
    recipe = build_recipe(cfg)
    dataset = training_dataset(root, cfg, tc, device)
    batches = device_batches(build_loader(dataset, cfg, tc, seed=3, device=device), dataset, recipe, device, False)
    out = [next(batches) for _ in range(steps)]
    batches.close()
    return out


@pytest.mark.parametrize("encoding,tolerance", [("float16", 0.0), ("lab8", 0.0), ("rgb8", 1e-4)])
def test_device_decode_gives_the_loader_decoded_batches(
    prepared: dict[str, Path], encoding: str, tolerance: float
) -> None:
    cpu = torch.device("cpu")
    loader_side, device_side = _epoch(prepared[encoding], "loader", cpu), _epoch(prepared[encoding], "device", cpu)
    for a, b in zip(loader_side, device_side, strict=True):
        assert a.keys() == b.keys() and torch.equal(a["label"], b["label"])
        for key in ("L", "ab"):
            assert a[key].shape == b[key].shape == (4, 1 if key == "L" else 2, RESOLUTION, RESOLUTION)
            assert b[key].dtype == torch.float32 and b[key].is_contiguous()
            assert float((a[key] - b[key]).abs().max()) <= tolerance, (encoding, key)


def test_device_decode_with_loader_workers_draws_the_same_flips(prepared: dict[str, Path]) -> None:
    """The batch sampler draws the flips (training.sampling), so loader processes and shipping stored bytes
    change nothing about which images are flipped."""
    cpu = torch.device("cpu")
    a = _epoch(prepared["float16"], "loader", cpu, loader_workers=2, steps=4)
    b = _epoch(prepared["float16"], "device", cpu, loader_workers=2, steps=4)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x["L"], y["L"]) and torch.equal(x["ab"], y["ab"])


def test_stored_items_are_the_shards_bytes(prepared: dict[str, Path]) -> None:
    """What crosses the loader with ``decode=False``: the stored dtype and size (2-4x fewer bytes than float32)."""
    for enc, dtype in (("float16", torch.float16), ("lab8", torch.uint8), ("rgb8", torch.uint8)):
        item = LabShardDataset(prepared[enc], "train", decode=False)[0]
        assert item["stored"].dtype == dtype and item["stored"].shape == (3, SIZE, SIZE)
        assert item["flip"].dtype == torch.bool and not bool(item["flip"])  # no flip asked
        assert bool(LabShardDataset(prepared[enc], "train", decode=False)[(0, True)]["flip"])


def test_auto_decodes_on_gpus_and_in_the_loader_on_cpus() -> None:
    auto = TrainConfig()
    assert auto.input_decode == "auto"
    assert decode_on_device(torch.device("cuda"), auto) and not decode_on_device(torch.device("cpu"), auto)
    assert decode_on_device(torch.device("cpu"), TrainConfig(input_decode="device"))
    assert not decode_on_device(torch.device("cuda"), TrainConfig(input_decode="loader"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("encoding", ["float16", "lab8", "rgb8"])
def test_cuda_decode_matches_the_cpu_loader(prepared: dict[str, Path], encoding: str) -> None:
    cpu_side = _epoch(prepared[encoding], "loader", torch.device("cpu"))
    gpu_side = _epoch(prepared[encoding], "auto", torch.device("cuda"))
    for a, b in zip(cpu_side, gpu_side, strict=True):
        assert b["L"].device.type == "cuda"
        for key in ("L", "ab"):
            assert float((a[key] - b[key].cpu()).abs().max()) <= 1e-3, (encoding, key)
