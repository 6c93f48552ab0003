"""Opt-in speed options for training (``train.channels_last``, ``train.compile``): same maths, other kernels.

- channels_last (NHWC) stores 4-D weights and activations pixel-major. cuDNN's tensor-core convolutions
  and oneDNN on CPU are written for that layout; in the default NCHW layout they transpose around every
  convolution. Applied to the module's weights (and, for clarity, to the batch's images): a convolution
  whose weight is channels_last produces channels_last output, so the whole network follows.
- compile = ``torch.compile`` of the module *in place* (``nn.Module.compile``): the module keeps its class,
  its ``state_dict`` keys and its place inside DDP, so checkpoints, ``unwrap`` and the generator export
  are unchanged. Kernels are generated on the first call of each mode (train / eval, with / without
  autograd): the first steps are slow, which benchmarks must count as warm-up. ``train.compile_mode``
  "reduce-overhead" records the compiled kernels as CUDA graphs (on a GPU only): a step at the papers'
  batch 8 launches hundreds of small kernels, and a graph replays them with one launch.

Neither changes what the networks compute; results differ only by floating-point reordering (tested in
``tests/test_fast_path.py``). One limit: a module compiled by ``torch.compile`` cannot be differentiated
twice ("aot_autograd does not currently support double backward"), and the WGAN-GP gradient penalty does
exactly that through the critic. :func:`discriminator_compilable` says whether a recipe's critic may be
compiled; the generator always may.

Two ways torch.compile can quietly give less than asked, neither of which raises or prints by default: a
*graph break* (an operation Dynamo cannot trace splits a network into several graphs, each launched on
its own) and a *skipped CUDA graph* (reduce-overhead falls back to plain compiled kernels, for a reason
only ``TORCH_LOGS=cudagraphs`` shows). :func:`compile_stats` reads both from torch's process-wide counters;
the loop logs them to MLflow and warns when they grow (:class:`CompileWatch`), and the benchmarks record
them beside each figure.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from chromapipe.models.base import Batch, Recipe


def apply_performance_options(
    module: nn.Module, *, channels_last: bool, compile: bool, compile_mode: str = "default"
) -> nn.Module:
    """Return ``module`` (the same object) with the chosen options applied (``compile_mode``: torch.compile's).

    Call before ``ray.train.torch.prepare_model`` / DDP and before building the optimisers: moving to a
    device keeps the channels_last layout, and DDP then wraps the compiled module.
    """
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    if compile:
        module.compile(mode=compile_mode)
    return module


def apply_to_pair(
    recipe: Recipe, G: nn.Module, D: nn.Module, *, channels_last: bool, compile: bool, compile_mode: str = "default"
) -> tuple[nn.Module, nn.Module]:
    """One model's G and D with the options (in place); D is compiled only where :func:`discriminator_compilable`.

    With ``compile``, Dynamo's caches are cleared first (``torch._dynamo.reset()``). Dynamo keeps compiled
    graphs per forward *function*, not per module, so a process that trains or benchmarks models in turn (the
    Ray worker, ``bench_train.py``) adds each model's graphs to those of the earlier models of its class
    (pix2pix ①–③, PalGAN's four variants). Past ``torch._dynamo.config.recompile_limit`` (8) graphs per function
    Dynamo stops compiling it and runs it eagerly, with one warning: the fifth PalGAN pair of a process trained
    its discriminator uncompiled (reports/benchmarks.md, "torch.compile on the paper networks"). The reset also
    frees the earlier models' CUDA-graph memory pools; their modules stay usable (they compile again if called).
    """
    if compile:
        torch._dynamo.reset()
    G = apply_performance_options(G, channels_last=channels_last, compile=compile, compile_mode=compile_mode)
    D = apply_performance_options(
        D, channels_last=channels_last, compile=compile and discriminator_compilable(recipe), compile_mode=compile_mode
    )
    return G, D


def compile_stats() -> dict[str, int]:
    """What torch.compile has done in this process so far (torch's process-wide counters, never reset here).

    ``graphs``: graphs compiled (each network's train, eval and no-grad calls are one graph each, more with
    graph breaks); ``graph_breaks``: places where Dynamo had to stop tracing; ``cudagraph_skips``: compiled
    graphs that reduce-overhead did not record as CUDA graphs (on a CPU every graph counts: there are none).
    """
    from torch._dynamo.utils import counters

    return {
        "graphs": int(counters["stats"]["unique_graphs"]),
        "graph_breaks": int(sum(counters["graph_break"].values())),
        "cudagraph_skips": int(counters["inductor"]["cudagraph_skips"]),
    }


def compile_problems(before: dict[str, int], after: dict[str, int], device_type: str, compile_mode: str) -> list[str]:
    """Sentences for what went wrong between two :func:`compile_stats` readings, with the log that says why.

    A skipped CUDA graph is only news with ``reduce-overhead`` on a GPU: elsewhere no graph is ever recorded.
    """
    problems = []
    if (breaks := after["graph_breaks"] - before["graph_breaks"]) > 0:
        problems.append(
            f"torch.compile broke the networks into more graphs at {breaks} place(s), each one more launch "
            "(TORCH_LOGS=graph_breaks names them)"
        )
    skips = after["cudagraph_skips"] - before["cudagraph_skips"]
    if skips > 0 and device_type == "cuda" and compile_mode == "reduce-overhead":
        problems.append(
            f"CUDA graphs were not recorded for {skips} compiled graph(s): those run as plain kernels "
            "(TORCH_LOGS=cudagraphs gives the reason)"
        )
    return problems


class CompileWatch:
    """torch.compile's counters over one model's training, for the loop's log steps.

    :meth:`look` returns what grew since the model started (graphs, graph breaks, CUDA-graph skips: logged
    to MLflow as ``compile/*``, so a run's page says whether compiling did what it should) and the problems
    that appeared since the previous look (for a warning in the log).
    """

    def __init__(self, device_type: str, compile_mode: str) -> None:
        self.device_type, self.compile_mode = device_type, compile_mode
        self._start = self._last = compile_stats()

    def look(self) -> tuple[dict[str, int], list[str]]:
        now = compile_stats()
        problems = compile_problems(self._last, now, self.device_type, self.compile_mode)
        self._last = now
        return {key: value - self._start[key] for key, value in now.items()}, problems


def batch_to_channels_last(batch: Batch) -> Batch:
    """The batch with every 4-D tensor (images, targets) in channels_last layout; other tensors as they are.

    Not needed for correctness (a channels_last convolution weight makes its output channels_last), but it
    saves one layout conversion per network input when the image has more than one channel.
    """
    return {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v for k, v in batch.items()}


def discriminator_compilable(recipe: Recipe) -> bool:
    """False when the recipe's critic is differentiated twice (:attr:`Recipe.critic_double_backward`: a WGAN-GP
    gradient penalty, pix2pix ③ and ChromaGAN): torch.compile cannot do that (see the module docstring)."""
    return not recipe.critic_double_backward


def count_flops(fn: Callable[[], object]) -> int:
    """Floating-point operations ``fn()`` runs, counted by ``torch.utils.flop_counter.FlopCounterMode``.

    What it counts: matrix multiplications and convolutions (forward and backward, a multiply-add = 2
    FLOPs), the work that bounds a GPU's throughput; element-wise ops, normalisation and the optimiser
    are not counted. Run it on modules that are not compiled: it intercepts eager operators.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())
