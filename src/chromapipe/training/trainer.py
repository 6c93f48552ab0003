"""The training core: one loop for every recipe, with or without Ray.

What is here is what the papers share and what every caller must agree on: the networks and their optimisers
(:func:`build_networks`), the critic/generator cadence (D every iteration, G every ``n_critic``-th), the
learning-rate schedules, the non-finite guard, throughput windows and the loss logs, in :func:`fit`. What
differs between callers is a :class:`Hook`: the Ray worker (``training.worker``) adds MLflow logging,
validation and Ray checkpoints; the benchmarks add nothing or a timer. So a change to the cadence is made
once, and the benchmarks measure what the pipeline trains.

Reproducibility: every worker seeds the same streams (:func:`seed_everything`): per-sample random draws
(``models.randomness``) and the data order (``training.sampling``) then do not depend on the number of
workers, and the training state a checkpoint holds (:meth:`Networks.state_dict`, :func:`capture_rng`, the step)
is everything a resumed run needs to take exactly the steps an uninterrupted one takes.
"""

from __future__ import annotations

import logging
import random
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from chromapipe.config import ModelConfig, TrainConfig
from chromapipe.models.base import Batch, Recipe, unwrap
from chromapipe.training.grad_layout import align_gradient_strides
from chromapipe.training.performance import apply_to_pair
from chromapipe.training.schedule import make_scheduler
from chromapipe.training.step import NonFiniteGuard, build_optimizers, logs_to_floats, mean_over_workers, train_step
from chromapipe.training.sync_batchnorm import convert_sync_batchnorm

log = logging.getLogger("chromapipe.train")

#: the generator's own loss keys: present in a window's logs only if a generator step happened in it
GENERATOR_TOTAL = "g_total"


# -- random state ------------------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed torch (CPU and every CUDA device), NumPy and Python's ``random`` alike on every worker: network
    initialisation, per-sample draws and anything else random then follow one stream whatever the rank."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def capture_rng() -> dict[str, Any]:
    """This process's random states (torch CPU and CUDA, NumPy, Python) as tensors and plain values, loadable
    with ``torch.load(weights_only=True)``."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "gauss": gauss,
        },  # fmt: skip
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Undo everything since :func:`capture_rng` took ``state`` (in this process)."""
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))


# -- the networks --------------------------------------------------------------------------------------------------
@dataclass
class Networks:
    """One model's trainable state: G and D (possibly DDP-wrapped), their optimisers and schedules."""

    G: nn.Module
    D: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    sched_g: torch.optim.lr_scheduler.LRScheduler
    sched_d: torch.optim.lr_scheduler.LRScheduler

    def train(self) -> None:
        self.G.train()
        self.D.train()

    def state_dict(self) -> dict[str, Any]:
        """Weights, optimiser moments and schedules; the plain modules' keys (no DDP or compile prefixes)."""
        return {
            "G": unwrap(self.G).state_dict(),
            "D": unwrap(self.D).state_dict(),
            **{k: getattr(self, k).state_dict() for k in ("opt_g", "opt_d", "sched_g", "sched_d")},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unwrap(self.G).load_state_dict(state["G"])
        unwrap(self.D).load_state_dict(state["D"])
        for key in ("opt_g", "opt_d", "sched_g", "sched_d"):
            getattr(self, key).load_state_dict(state[key])


def build_networks(
    recipe: Recipe,
    cfg: ModelConfig,
    tc: TrainConfig,
    steps: int,
    device: torch.device,
    *,
    world_size: int = 1,
    wrap: Callable[[nn.Module], nn.Module] | None = None,
) -> Networks:
    """G and D as the recipe builds them, on ``device``, with the training options applied in the order they
    need: BatchNorm synchronised across workers (``train.sync_batchnorm``, when ``world_size`` > 1), the
    channels-last layout and ``torch.compile`` (``training.performance``), gradients in the layout DDP's
    buckets have (``training.grad_layout``, when ``world_size`` > 1), then ``wrap`` (DDP: Ray's
    ``prepare_model``), then the optimisers (whose fused kernel depends on where the parameters are) and the
    learning-rate schedules over ``steps``."""
    G, D = recipe.build_generator(), recipe.build_discriminator()
    if world_size > 1 and tc.sync_batchnorm:
        G, D = convert_sync_batchnorm(G, device), convert_sync_batchnorm(D, device)
    G, D = apply_to_pair(
        recipe,
        G.to(device),
        D.to(device),
        channels_last=tc.channels_last,
        compile=tc.compile,
        compile_mode=tc.compile_mode,
    )
    if world_size > 1:  # what DDP's buckets check: no warning, no copy per step (training.grad_layout)
        align_gradient_strides(G)
        align_gradient_strides(D)
    if wrap is not None:
        G, D = wrap(G), wrap(D)
    opt_g, opt_d = build_optimizers(G, D, cfg)
    return Networks(G, D, opt_g, opt_d, make_scheduler(opt_g, cfg, steps), make_scheduler(opt_d, cfg, steps))


# -- what callers plug in --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LogEvent:
    """One logging window's summary, at step ``step`` of ``steps``.

    ``values``: the window's loss logs as floats, averaged over the workers (the global batch's losses) — every
    discriminator term of the last step, and the generator terms of the window's last generator step (absent
    when the window had none: with ``n_critic`` > 1 a window can hold critic steps only). ``images_per_s``:
    images of the global batch per second over the window, hooks included.
    """

    step: int
    steps: int
    values: dict[str, float]
    images_per_s: float
    seconds: float  # the window's wall time
    window_steps: int
    lr_g: float

    @property
    def eta_seconds(self) -> float:
        return (self.steps - self.step) * self.seconds / max(1, self.window_steps)


class StopTraining(Exception):
    """Raised by a hook (:meth:`Hook.after_step`) to end :func:`fit` early, e.g. at a time limit."""


@dataclass(frozen=True)
class FitResult:
    """Where :func:`fit` stopped: the iterations done and the losses last read."""

    step: int
    values: dict[str, float]


class Hook:
    """What a caller of :func:`fit` adds to the loop; every method is optional."""

    def on_log(self, event: LogEvent, nets: Networks) -> None:
        """At log steps (every ``log_every``, and the last), after the losses are read (one host sync)."""

    def after_step(self, step: int, nets: Networks) -> None:
        """After every step (``step`` iterations done). May raise :class:`StopTraining` to end training here."""

    def on_checkpoint(self, step: int, values: dict[str, float], nets: Networks) -> None:
        """Every ``checkpoint_every`` steps but the last: save whatever resuming at ``step`` needs."""


class ProgressLog(Hook):
    """One line per log step: losses, throughput, time left. A window without a generator step says so
    instead of printing a stale or missing generator loss."""

    def __init__(self, name: str) -> None:
        self.name = name

    def on_log(self, event: LogEvent, nets: Networks) -> None:
        g = event.values.get(GENERATOR_TOTAL)
        log.info(
            "%s step %d/%d  g=%s d=%.4f  %.2f img/s  eta %.0fs",
            self.name,
            event.step,
            event.steps,
            f"{g:.4f}" if g is not None else "- (critic steps only)",
            event.values["d_total"],
            event.images_per_s,
            event.eta_seconds,
        )


# -- the loop --------------------------------------------------------------------------------------------------------
def fit(
    recipe: Recipe,
    nets: Networks,
    batches: Iterator[Batch],
    *,
    steps: int,
    start_step: int = 0,
    n_critic: int = 1,
    images_per_step: int,
    amp: bool = False,
    log_every: int = 0,
    checkpoint_every: int = 0,
    hooks: Sequence[Hook] = (),
) -> FitResult:
    """Train ``nets`` from iteration ``start_step`` to ``steps`` on ``batches``.

    Args:
        recipe: the model's losses and scaling.
        nets: from :func:`build_networks`, restored from a checkpoint when ``start_step`` > 0.
        batches: this worker's batches on the device, from the one at ``start_step`` on
            (``training.batches.device_batches``).
        steps: iterations in the whole run; ``start_step``: iterations already done.
        n_critic: discriminator iterations per generator iteration. Iteration ``k`` (0-based) updates G when
            ``(k + 1) % n_critic == 0``: a function of the step, so a resumed run keeps the phase.
        images_per_step: the global batch (for the images/s of the log windows).
        amp: bf16 autocast (see ``training.step.train_step``).
        log_every: steps per log window (0: only the last step). Losses stay on the device in between: no host
            synchronisation per step.
        checkpoint_every: steps between :meth:`Hook.on_checkpoint` calls (0: never); never at the last step.
        hooks: what the caller adds (logging, validation, checkpoints, timing).

    Returns:
        The iterations done (``steps``, or fewer when a hook stopped training) and the losses last read.

    Raises:
        FloatingPointError: a non-finite generator or discriminator loss, at the first log or checkpoint step
            after it (``training.step.NonFiniteGuard``).
    """
    guard = NonFiniteGuard(start_step)
    logs: dict[str, torch.Tensor | float] = {}
    values: dict[str, float] = {}
    window_start, window_first = time.perf_counter(), start_step
    nets.train()
    step = start_step
    while step < steps:
        g_step = (step + 1) % n_critic == 0
        logs.update(train_step(recipe, nets.G, nets.D, nets.opt_g, nets.opt_d, next(batches), g_step, amp))
        guard.update(logs)
        with warnings.catch_warnings():  # the schedules count iterations; G's optimiser steps every n_critic-th
            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step()` before `optimizer.step()`")
            nets.sched_g.step()
        nets.sched_d.step()
        step += 1
        last = step == steps
        log_now = (log_every and step % log_every == 0) or last
        save_now = bool(checkpoint_every) and step % checkpoint_every == 0 and not last
        if log_now or save_now:
            guard.check(step)  # one host sync: losses are read only here
            values = logs_to_floats(mean_over_workers(logs))  # the global batch's losses, whatever the workers
        if log_now:
            seconds = max(time.perf_counter() - window_start, 1e-9)
            window = step - window_first
            rate = window * images_per_step / seconds
            event = LogEvent(step, steps, values, rate, seconds, window, nets.sched_g.get_last_lr()[0])
            for hook in hooks:
                hook.on_log(event, nets)
            logs = {}  # the next window's logs hold only what its own steps computed
            window_start, window_first = time.perf_counter(), step
        try:
            for hook in hooks:
                hook.after_step(step, nets)
        except StopTraining:
            guard.check(step)
            return FitResult(step, logs_to_floats(mean_over_workers(logs)) if logs else values)
        if save_now:
            for hook in hooks:
                hook.on_checkpoint(step, values, nets)
    return FitResult(step, values)
