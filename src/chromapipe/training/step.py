"""One GAN training iteration, independent of Ray: shared by the Ray Train loop and the benchmarks.

Also here, because the loop and the benchmarks must agree on them: the optimiser setup
(:func:`build_optimizers`) and the handling of the iteration's loss logs without a host synchronisation
per step. :func:`train_step` returns detached 0-dim tensors; the loop keeps them on the device, feeds each
step's logs to a :class:`NonFiniteGuard` (a device-side "all finite so far" flag, no sync) and turns the
logs into floats with :func:`logs_to_floats` only on the steps it logs. On a GPU a ``.item()`` per loss
per step stalls the CPU until the GPU has caught up, so kernel launches for the next step cannot overlap
the current one; at the papers' small batches (8-16) the step is launch-bound and that stall is the cost.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import nn

from chromapipe.config import ModelConfig
from chromapipe.models.base import Batch, Recipe, unwrap

#: the losses whose non-finiteness stops training, and what to call them in the error
GUARDED_LOSSES = {"d_total": "discriminator", "g_total": "generator"}


def _detached(value: torch.Tensor | float) -> torch.Tensor:
    """A log value as a detached 0-dim tensor. Recipes that still log Python floats (``losses.scalar``)
    have already synchronised; their value becomes a CPU tensor so every log has one type."""
    if isinstance(value, torch.Tensor):
        return value.detach().reshape(())
    return torch.tensor(float(value))


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Parameters of ``module`` do not require gradients inside the block (restored after it, also on error).

    Autograd then skips their weight-gradient kernels: for the generator update, D's backward shrinks to
    the input-gradient half (about 7 % of a pix2pix iteration's FLOPs at 256²).
    """
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def train_step(recipe: Recipe, G, D, opt_g, opt_d, batch: Batch, g_step: bool, amp: bool) -> dict[str, torch.Tensor]:
    """One iteration: a D update, then (on generator iterations) a G update. Returns the loss logs.

    Every log value, ``d_total`` and (on generator iterations) ``g_total`` included, is a detached 0-dim
    tensor on the loss's device: nothing here waits for the device. ``float(v)`` / ``math.isfinite(v)``
    still work on them (one sync each); use :func:`logs_to_floats` to convert a whole dict in one sync.

    G runs without autograd on critic-only iterations. In the G update D is called unwrapped (no DDP
    all-reduce) and :func:`frozen`: the backward pass computes the gradient with respect to D's input only,
    not D's weight gradients, which the G update would throw away (the thesis's code does the same).
    ``amp`` = bf16 autocast (no loss scaling needed, unlike fp16).

    Each call starts a new iteration for CUDA graphs (``train.compile_mode: reduce-overhead``): the graphs'
    output buffers of the previous iteration may then be reused, those of this one (G's output, D's calls
    on real and fake) are kept until it ends. Without graphs the marker does nothing.
    """
    torch.compiler.cudagraph_mark_step_begin()
    device_type = batch["L"].device.type
    autocast = lambda: torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=amp)  # noqa: E731
    with autocast(), torch.set_grad_enabled(g_step):
        out = G(**recipe.generator_inputs(batch))
    with autocast():
        d_loss, d_logs = recipe.discriminator_loss(D, batch, {k: v.detach() for k, v in out.items()})
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()
    logs = {k: _detached(v) for k, v in d_logs.items()}
    logs["d_total"] = d_loss.detach()
    if g_step:
        with frozen(D):
            with autocast():
                g_loss, g_logs = recipe.generator_loss(unwrap(D), batch, out)
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
        opt_g.step()
        logs.update({k: _detached(v) for k, v in g_logs.items()})
        logs["g_total"] = g_loss.detach()
    return logs


# -- optimisers ------------------------------------------------------------------------------------------------
def fused_adam_supported(params: list[torch.Tensor]) -> bool:
    """Whether ``Adam(fused=True)`` accepts these parameters: floating point, all on one device type that
    has fused kernels (CUDA, and CPU since torch 2.4). The fused kernel updates every tensor in one launch,
    which matters on a GPU; where it is not available the default (foreach) implementation is used."""
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        supported = set(_get_fused_kernels_supported_devices())
    except ImportError:  # private helper moved: assume only CUDA
        supported = {"cuda"}
    return bool(params) and all(p.is_floating_point() and p.device.type in supported for p in params)


def _adam(module: nn.Module, lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    params = list(module.parameters())
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas), fused=True if fused_adam_supported(params) else None)


def build_optimizers(G: nn.Module, D: nn.Module, cfg: ModelConfig) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """The papers' optimiser for both networks: Adam with ``cfg.lr_g`` / ``cfg.lr_d`` and ``cfg.betas``.

    Call it after the networks are on their device (after ``prepare_model`` / ``.to(device)``): whether the
    fused kernel is used depends on where the parameters are. Every parameter is handed to Adam, as the loop
    did before, so optimiser checkpoints stay loadable.
    """
    return _adam(G, cfg.lr_g, cfg.betas), _adam(D, cfg.lr_d, cfg.betas)


# -- logs without a sync per step ------------------------------------------------------------------------------
def logs_to_floats(logs: Mapping[str, torch.Tensor | float]) -> dict[str, float]:
    """Loss logs as Python floats, with one host synchronisation per device (not one per value).

    Call it only on the steps that are logged or reported; keys keep their order.
    """
    floats: dict[str, float] = {}
    by_device: dict[torch.device, list[str]] = {}
    for key, value in logs.items():
        if isinstance(value, torch.Tensor):
            by_device.setdefault(value.device, []).append(key)
        else:
            floats[key] = float(value)
    for keys in by_device.values():
        values = torch.stack([logs[k].detach().float().reshape(()) for k in keys]).tolist()
        floats.update(zip(keys, values))
    return {key: floats[key] for key in logs}


def mean_over_workers(logs: Mapping[str, torch.Tensor | float]) -> dict[str, torch.Tensor | float]:
    """The logs averaged over the data-parallel workers (one all-reduce), so what is logged is the loss of the
    global batch, whatever the number of workers; unchanged outside a process group of several ranks.

    Every rank must call it at the same steps with the same keys (the loop does, at log and checkpoint steps).
    Each worker's loss is a mean over its ``batch_size / N`` images, so the mean of the N is the global mean.
    """
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1) or not logs:
        return dict(logs)
    keys = sorted(logs)
    device = next((v.device for v in logs.values() if isinstance(v, torch.Tensor)), torch.device("cpu"))
    stacked = torch.stack([torch.as_tensor(logs[k], dtype=torch.float32, device=device).reshape(()) for k in keys])
    dist.all_reduce(stacked)
    stacked /= dist.get_world_size()
    means = dict(zip(keys, stacked.unbind()))
    return {k: means[k] for k in logs}


class NonFiniteGuard:
    """Stops training on a NaN/inf generator or discriminator loss, checking on the device.

    :meth:`update` (every step) ANDs ``isfinite(d_total)`` / ``isfinite(g_total)`` into a device tensor
    flag per loss: no synchronisation. :meth:`check` (on log steps) reads the flags in one sync and raises
    :class:`FloatingPointError` naming the loss and the window of steps since the previous check. The
    price of not syncing every step: the error names a window of at most ``log_every`` steps, not the step,
    and training runs on for at most that many steps after the first non-finite loss.
    """

    def __init__(self, start_step: int = 0) -> None:
        self._finite: dict[str, torch.Tensor] = {}
        self._window_start = start_step + 1

    def update(self, logs: Mapping[str, torch.Tensor | float]) -> None:
        """Fold one step's logs (the dict :func:`train_step` returned) into the flags."""
        for key in GUARDED_LOSSES:
            if key not in logs:
                continue
            value = logs[key]
            ok = (
                torch.isfinite(value.detach())
                if isinstance(value, torch.Tensor)
                else torch.tensor(math.isfinite(value))
            )
            previous = self._finite.get(key)
            self._finite[key] = ok if previous is None else previous & ok.to(previous.device)

    def check(self, step: int) -> None:
        """Raise :class:`FloatingPointError` if a guarded loss was non-finite since the last check (one sync).

        ``step`` is the number of iterations done so far; the next window starts after it.
        """
        first, self._window_start = self._window_start, step + 1
        flags, self._finite = self._finite, {}
        if not flags:
            return
        keys = list(flags)
        device = flags[keys[0]].device
        finite = torch.stack([flags[k].reshape(()).to(device) for k in keys]).tolist()
        bad = [key for key, ok in zip(keys, finite) if not ok]
        if bad:
            what = " and ".join(f"{GUARDED_LOSSES[k]} loss ({k})" for k in bad)
            window = f"step {step}" if first >= step else f"steps {first}-{step}"
            raise FloatingPointError(f"non-finite {what} in {window}; lower the learning rate or check the data")
