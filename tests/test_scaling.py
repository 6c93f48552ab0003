"""Same science at every scale, without Ray: the pieces that make N workers train what one worker trains, and a
resumed run take the steps of the run it replaces. (The same through real Ray Train: test_training.py.)

- BatchNorm synchronised over two gloo processes (``training.sync_batchnorm``) is BatchNorm on the concatenated
  batch: outputs, input and parameter gradients, running statistics.
- The batch sampler (``training.sampling``) gives each step the same images and flips for any number of
  workers, and continues exactly where a resumed run stopped.
- Per-sample random draws (``models.randomness``): the same masks per image for any number of workers.
- The training core (``training.trainer.fit``) resumed from a checkpoint's state ends bitwise where an
  uninterrupted run ends.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from chromapipe.config import DataConfig, ModelConfig, SplitConfig, TrainConfig
from chromapipe.data.prepare import prepare
from chromapipe.models.randomness import SampleDropout, batch_split, per_sample_rand
from chromapipe.models.registry import build_recipe
from chromapipe.training.batches import build_loader, device_batches, training_dataset
from chromapipe.training.grad_layout import align_gradient_strides
from chromapipe.training.sampling import GlobalBatchSampler
from chromapipe.training.sync_batchnorm import AllReduceBatchNorm, convert_sync_batchnorm
from chromapipe.training.trainer import (
    Hook,
    LogEvent,
    Networks,
    build_networks,
    capture_rng,
    fit,
    restore_rng,
    seed_everything,
)

NORM = "tests.tiny_recipe:TinyNormRecipe"


# -- synchronised BatchNorm ----------------------------------------------------------------------------------------
def _sync_bn_rank(rank: int, init: str, x: torch.Tensor, w: torch.Tensor, out: dict) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        bn = convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(3, momentum=0.3)), torch.device("cpu"))
        with torch.no_grad():
            bn[0].weight.copy_(torch.tensor([1.5, 0.5, -1.0]))
            bn[0].bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        half = x.shape[0] // 2
        xr = x[rank * half : (rank + 1) * half].clone().requires_grad_(True)
        y = bn(xr)
        (y * w[rank * half : (rank + 1) * half]).sum().backward()
        out[rank] = {
            "type": type(bn[0]).__name__,
            "y": y.detach(),
            "x_grad": xr.grad,
            "weight_grad": bn[0].weight.grad,
            "bias_grad": bn[0].bias.grad,
            "running_mean": bn[0].running_mean.clone(),
            "running_var": bn[0].running_var.clone(),
        }
    finally:
        dist.destroy_process_group()


def test_synchronised_batchnorm_is_batchnorm_over_the_global_batch(tmp_path: Path) -> None:
    torch.manual_seed(1)
    x, w = torch.randn(4, 3, 5, 5) * 3 + 1, torch.randn(4, 3, 5, 5)
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_sync_bn_rank, args=(f"file://{tmp_path / 'pg'}", x, w, out), nprocs=2, join=True)
        ranks = [dict(out[0]), dict(out[1])]
    reference = nn.BatchNorm2d(3, momentum=0.3)
    with torch.no_grad():
        reference.weight.copy_(torch.tensor([1.5, 0.5, -1.0]))
        reference.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    xr = x.clone().requires_grad_(True)
    y = reference(xr)
    (y * w).sum().backward()
    assert ranks[0]["type"] == "AllReduceBatchNorm"
    close = dict(atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat([r["y"] for r in ranks]), y.detach(), **close)
    torch.testing.assert_close(torch.cat([r["x_grad"] for r in ranks]), xr.grad, **close)
    # each rank's parameter gradient is its samples' share; DDP sums (and averages) them into the global one
    torch.testing.assert_close(ranks[0]["weight_grad"] + ranks[1]["weight_grad"], reference.weight.grad, **close)
    torch.testing.assert_close(ranks[0]["bias_grad"] + ranks[1]["bias_grad"], reference.bias.grad, **close)
    for r in ranks:
        torch.testing.assert_close(r["running_mean"], reference.running_mean, **close)
        torch.testing.assert_close(r["running_var"], reference.running_var, **close)


def test_synchronised_batchnorm_outside_a_process_group_is_plain_batchnorm() -> None:
    bn = AllReduceBatchNorm(3)
    plain = nn.BatchNorm2d(3)
    x = torch.randn(4, 3, 6, 6)
    torch.testing.assert_close(bn(x), plain(x))
    assert set(bn.state_dict()) == set(plain.state_dict())  # checkpoints do not depend on synchronisation


# -- gradients in DDP's bucket layout -----------------------------------------------------------------------------
class _ChannelsLastGrad(torch.autograd.Function):
    """Identity whose backward returns the gradient with channels-last strides, as some CPUs' oneDNN kernels
    return a 1×1 convolution's weight gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        n, c, h, w = grad.shape
        return torch.empty_strided(grad.shape, (c * h * w, 1, w * c, c)).copy_(grad)


class _OneByOne(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(x, _ChannelsLastGrad.apply(self.weight))


def test_aligned_gradients_get_the_parameters_strides_without_a_copy() -> None:
    plain, aligned = _OneByOne(), _OneByOne()
    assert align_gradient_strides(aligned) == 1
    x = torch.randn(2, 3, 5, 5)
    for m in (plain, aligned):
        m(x).sum().backward()
    assert plain.weight.grad.stride() != plain.weight.stride()  # autograd's contract lets this through
    assert aligned.weight.grad.stride() == aligned.weight.stride()
    torch.testing.assert_close(aligned.weight.grad, plain.weight.grad, rtol=0, atol=0)


def _ddp_warnings_rank(rank: int, init: str, align: bool, out: dict) -> None:
    import warnings

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        module = _OneByOne()
        if align:
            align_gradient_strides(module)
        ddp = nn.parallel.DistributedDataParallel(module)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(2):
                ddp(torch.randn(2, 3, 5, 5)).sum().backward()
        out[rank] = [str(w.message) for w in caught]
    finally:
        dist.destroy_process_group()


def test_ddp_does_not_warn_about_gradient_strides_once_aligned(tmp_path: Path) -> None:
    """The control shows the warning the issue saw; aligned, DDP neither warns nor copies."""
    found = {}
    with mp.Manager() as manager:
        for align in (False, True):
            out = manager.dict()
            mp.spawn(_ddp_warnings_rank, args=(f"file://{tmp_path / f'pg-{align}'}", align, out), nprocs=2, join=True)
            found[align] = any("Grad strides do not match bucket view strides" in m for m in out[0])
    assert found == {False: True, True: False}


# -- the batch sampler -----------------------------------------------------------------------------------------------
def _global_batches(n: int, batch: int, world: int, steps: int, start: int = 0) -> list[list[tuple[int, bool]]]:
    samplers = [
        iter(GlobalBatchSampler(n, batch, seed=5, rank=r, world_size=world, hflip=True, start_step=start))
        for r in range(world)
    ]
    return [sum((next(s) for s in samplers), []) for _ in range(steps)]


@pytest.mark.parametrize("world", [2, 4])
def test_every_step_has_the_same_images_and_flips_for_any_number_of_workers(world: int) -> None:
    one = _global_batches(23, 4, 1, steps=14)  # 5 steps per epoch: spans two epoch boundaries
    assert _global_batches(23, 4, world, steps=14) == one
    first_epoch = [i for batch in one[:5] for i, _ in batch]
    assert len(set(first_epoch)) == 20  # each image at most once per epoch; the last 3 dropped
    assert any(f for batch in one for _, f in batch) and not all(f for batch in one for _, f in batch)


def test_a_sampler_started_at_a_step_continues_the_uninterrupted_order() -> None:
    assert _global_batches(23, 4, 2, steps=6, start=7) == _global_batches(23, 4, 2, steps=13)[7:]


def test_sampler_without_flips_and_with_too_few_images() -> None:
    assert not any(f for _, f in GlobalBatchSampler(10, 2, seed=0, hflip=False).draws(3))
    with pytest.raises(ValueError, match="exceeds the 3 training images"):
        GlobalBatchSampler(3, 4, seed=0)


# -- per-sample random draws -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("world", [2, 4])
def test_per_sample_draws_do_not_depend_on_the_number_of_workers(world: int) -> None:
    torch.manual_seed(3)
    whole = per_sample_rand((8, 3, 2))
    parts = []
    for rank in range(world):
        torch.manual_seed(3)  # every worker follows the same stream
        with batch_split(rank, world):
            parts.append(per_sample_rand((8 // world, 3, 2)))
    assert torch.equal(torch.cat(parts), whole)


def test_sample_dropout_is_dropout_with_worker_independent_masks() -> None:
    x = torch.ones(8, 16, 4, 4)
    drop = SampleDropout(0.5, channelwise=True).train()
    torch.manual_seed(0)
    y = drop(x)
    per_channel = y.flatten(2)
    assert torch.all(per_channel == per_channel[..., :1])  # whole channels, as nn.Dropout2d
    assert set(y.unique().tolist()) <= {0.0, 2.0} and 0.3 < float((y == 0).float().mean()) < 0.7
    with batch_split(1, 2):
        torch.manual_seed(0)
        assert torch.equal(drop(x[4:]), y[4:])
    assert torch.equal(drop.eval()(x), x)


# -- the training core resumed ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sample_shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("core") / "sample"
    prepare(DataConfig(size=32, crops_per_image=4, splits=SplitConfig(0.8, 0.1, 0.1), workers=1), root)
    return root


class _Losses(Hook):
    def __init__(self) -> None:
        self.rows: dict[int, dict[str, float]] = {}

    def on_log(self, event: LogEvent, nets: Networks) -> None:
        self.rows[event.step] = event.values


def _run(shards: Path, cfg: ModelConfig, steps: int, start: int = 0, state: dict | None = None):
    """One worker through the core, as the Ray worker composes it (seed, networks, sampler from ``start``)."""
    seed_everything(11)
    device, tc = torch.device("cpu"), TrainConfig()
    recipe = build_recipe(cfg)
    dataset = training_dataset(shards, cfg, tc, device)
    nets = build_networks(recipe, cfg, tc, cfg.steps, device)
    if state is not None:
        nets.load_state_dict(state["networks"])
        restore_rng(state["rng"])
    loader = build_loader(dataset, cfg, tc, seed=11, start_step=start, device=device)
    losses = _Losses()
    fit(recipe, nets, device_batches(loader, dataset, recipe, device, False), steps=steps, start_step=start,
        n_critic=cfg.n_critic, images_per_step=cfg.batch_size, log_every=1, hooks=[losses])  # fmt: skip
    return nets, losses.rows


def test_the_core_resumed_from_a_checkpoint_state_ends_where_the_uninterrupted_run_ends(sample_shards: Path) -> None:
    """BatchNorm, dropout, random flips, a cosine schedule and n_critic 2: the saved state (weights, Adam
    moments, schedules, random states) and the step restore everything the remaining steps depend on."""
    cfg = ModelConfig(arch=NORM, resolution=32, batch_size=4, steps=12, n_critic=2, schedule="cosine", lr_min=1e-5)
    straight, straight_losses = _run(sample_shards, cfg, 12)
    first, first_losses = _run(sample_shards, cfg, 6)
    state = {"networks": first.state_dict(), "rng": capture_rng()}
    resumed, resumed_losses = _run(sample_shards, cfg, 12, start=6, state=state)
    assert first_losses | resumed_losses == straight_losses
    for key, value in straight.state_dict()["G"].items():
        assert torch.equal(resumed.state_dict()["G"][key], value), key
    for key, value in straight.state_dict()["D"].items():
        assert torch.equal(resumed.state_dict()["D"][key], value), key
    # the control: without the random states the resumed steps are different ones
    _, unrestored = _run(sample_shards, cfg, 12, start=6, state={"networks": state["networks"], "rng": _fresh_rng()})
    assert unrestored != resumed_losses


def _fresh_rng() -> dict:
    torch.manual_seed(12345)
    return capture_rng()


def test_generator_losses_appear_only_in_windows_with_a_generator_step(sample_shards: Path) -> None:
    """n_critic 3: steps 1, 2 are critic-only (no g_total: no stale or missing value reads as a loss)."""
    cfg = ModelConfig(arch=NORM, resolution=32, batch_size=4, steps=6, n_critic=3)
    _, rows = _run(sample_shards, cfg, 6)
    assert [("g_total" in rows[s]) for s in range(1, 7)] == [False, False, True, False, False, True]


def test_networks_state_has_the_plain_modules_keys() -> None:
    cfg = ModelConfig(arch=NORM, resolution=32, batch_size=4, steps=2)
    recipe = build_recipe(cfg)
    nets = build_networks(recipe, cfg, TrainConfig(), 2, torch.device("cpu"), world_size=2)
    assert any(isinstance(m, AllReduceBatchNorm) for m in nets.G.modules())  # synchronised when N > 1
    assert list(nets.state_dict()["G"]) == list(recipe.build_generator().state_dict())
    plain = build_networks(recipe, cfg, dataclasses.replace(TrainConfig(), sync_batchnorm=False), 2,
                           torch.device("cpu"), world_size=2)  # fmt: skip
    assert not any(isinstance(m, AllReduceBatchNorm) for m in plain.G.modules())
    assert list(itertools.islice(GlobalBatchSampler(8, 4, seed=0), 1))  # the sampler is endless
