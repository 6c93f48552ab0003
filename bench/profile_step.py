"""Where a training step goes, in device-independent counts: operators, FLOPs, bytes, and an H200 roofline.

For each model (from --params; default params-paper.yaml) it builds the step exactly as bench_train.py does
(``bench_train.training_pair`` and ``random_batch``, ``train_step``), runs one full step as warm-up (all
n_critic critic iterations + the generator iteration; Adam's state is created here), then counts ONE more
full step, on the CPU, and reports:

1. operator calls per step: every ATen operator the step dispatches *below autograd*, forward, backward and
   optimiser, split into ops that would launch at least one GPU kernel and ops that do not (views, ``empty``,
   ``detach``, metadata queries);
2. FLOPs of matmuls/convolutions (the ops ``torch.utils.flop_counter`` has formulas for, i.e. exactly what
   bench_train.py's FlopCounterMode counts; checked against a FlopCounterMode run over the same step)
   versus every other op (0 FLOPs counted: their cost is memory traffic);
3. bytes read + written by each op: the sum of its input and output tensor sizes (in-place outputs and
   mutated arguments once as writes, broadcast inputs at their real size): a lower bound on memory traffic;
   for non-matmul/conv ops that is traffic tensor cores cannot speed up;
4. breakdowns by op name, by the innermost module (class and path), by phase (forward/loss, backward,
   optimiser), by network, and by source line in ``src/chromapipe``. Forward ops take the module from
   ``ModuleTracker`` and the line from the Python stack; backward ops take both from the forward call that
   created the autograd node they run (a TorchFunctionMode labels each node as it is created; such rows
   are marked ``[bwd]``). Also listed: ops that synchronise the host with the
   device (``.item()``/``float()``/``bool()`` = ``aten._local_scalar_dense``, ``nonzero``, boolean-mask
   indexing, ...) with the Python line that issued them;
5. a roofline lower bound of GPU time per step on an H200 (constants below): t_flops (matmul/conv FLOPs at
   the dense tensor-core peak), t_bytes (all bytes at HBM bandwidth), t_launch (kernel ops × an assumed
   per-launch cost), the per-op bound sum(max(flops_i/peak, bytes_i/BW)) (kernels on one stream run one
   after another), and which term dominates.

Why a TorchDispatchMode, not profiler events, for the counts: a dispatch mode sees each operator exactly
once, after autograd has decomposed composite ops (``linear`` -> ``t`` + ``addmm``) and before the CPU
kernel runs; the ops a kernel calls internally (``convolution`` -> ``_convolution`` -> ``mkldnn_convolution``,
``empty``/``resize_`` inside kernels) run with the mode switched off, so nothing is counted twice and nothing
CPU-specific is added. Those are the ops a CUDA eager step dispatches as well (each a >=1 kernel launch; a
few CUDA kernels launch more than one: cuDNN convolutions with layout transforms, two-pass reductions, so
the launch count is a lower bound). The mode also sees every tensor argument, which gives exact byte counts
with no shape-string parsing. torch.profiler (record_shapes=True) is still run over a third step
(``--no-torch-profiler`` skips it) as a cross-check: its leaf ``aten::`` events (no ``aten::`` children)
and the CPU self time of the top ops go into the JSON.

CPU vs CUDA differences that matter here, and how they are handled:
- ``F.scaled_dot_product_attention``: the CPU picks the math path (bmm, softmax, bmm: the full
  queries × keys attention matrix is written and read). On CUDA the fused kernels (flash, memory-efficient)
  require the last dimension of q, k and v to have stride 1 (torch's sdp_utils
  ``check_last_dim_stride_equals_1_dense``); PalGAN's q/k/v are ``flatten(2).transpose(1, 2)`` views with
  last-dim stride H·W, so CUDA takes the same math path, and the default count is faithful. ``--fused-sdpa``
  counts instead what a fused memory-efficient kernel would do (q/k/v made contiguous, one forward op that
  reads q, k, v and writes out + logsumexp, one backward op; FLOPs by flop_counter's SDPA formulas): the
  what-if of making q/k/v contiguous.
- Normalisation is ``native_batch_norm`` on CPU, cuDNN/native batch norm on CUDA: one op either way.
- fp32 by default (the "H200 fp32 plain" row of reports/benchmarks.md; cuDNN runs fp32 convolutions in TF32, so
  t_flops uses the TF32 peak; matmuls, unlike convolutions, stay full fp32 unless
  ``torch.backends.cuda.matmul.allow_tf32`` is set, which this bound ignores). ``--amp`` profiles bf16 autocast on
  the CPU; CPU autocast's op lists are not CUDA's, so treat its byte counts as indicative only. ``--channels-last``
  applies bench_train's NHWC option (layout conversions such as ``instance_norm``'s ``input.contiguous()`` are the
  same ATen code on any device).

    python bench/profile_step.py --models pix2pix,palgan --batch-size 8 --threads 2
    python bench/profile_step.py --models palgan --batch-size 32 --append
    python bench/profile_step.py --models palgan --batch-size 1 --resolution 64 --out /tmp/p.json   # smoke test
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from chromapipe.config import load_params
from chromapipe.training.step import train_step

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import PEAK_TFLOPS, device_name, random_batch, training_pair  # noqa: E402  (a sibling script, not a package)

# -- H200 constants for the roofline ---------------------------------------------------------------------------
#: dense tensor-core peaks of the H200 SXM (bf16, TF32), TFLOP/s: bench_train.PEAK_TFLOPS (NVIDIA datasheet)
H200_BF16_TFLOPS, H200_TF32_TFLOPS = PEAK_TFLOPS["H200"]
#: HBM3e bandwidth of the H200 SXM, TB/s: NVIDIA H200 datasheet ("4.8 TB/s")
H200_HBM_TBPS = 4.8
#: seconds per kernel launch: an ASSUMPTION, not a measurement. A bare CUDA launch costs ~2-4 µs of host
#: time; an eager PyTorch op adds its Python + dispatcher overhead, ~5-10 µs in total. With the host
#: issuing ops faster than the GPU finishes them this is hidden; it bounds the step when kernels are short.
LAUNCH_S = 5e-6
SOURCE = {
    "bf16_tflops": "NVIDIA H200 SXM datasheet, dense (bench_train.PEAK_TFLOPS)",
    "tf32_tflops": "NVIDIA H200 SXM datasheet, dense (bench_train.PEAK_TFLOPS); cuDNN's default for fp32 convolutions",
    "hbm_tb_per_s": "NVIDIA H200 SXM datasheet (HBM3e)",
    "launch_us": "assumption: ~5 µs host cost per eager op/kernel launch (bare cudaLaunchKernel ~2-4 µs)",
}

#: ops that run no kernel on a GPU besides the view ops (``OpOverload.is_view``): allocation and aliasing
NO_KERNEL = {
    "aten.empty", "aten.empty_like", "aten.empty_strided", "aten.new_empty", "aten.new_empty_strided",
    "aten.detach", "aten.alias", "aten._unsafe_view", "aten.lift_fresh", "aten._reshape_alias",
    "aten.resize_", "aten.set_", "aten._has_compatible_shallow_copy_type", "aten.is_same_size",
}  # fmt: skip
#: ops that overwrite their ``self`` without reading it (the mutated argument counts as a write only)
WRITE_ONLY_SELF = {
    "aten.fill_",
    "aten.zero_",
    "aten.copy_",
    "aten.normal_",
    "aten.uniform_",
    "aten.bernoulli_",
    "aten.random_",
    "aten.exponential_",
}
#: ops that make the host wait for the device (a device-to-host read, or an output size only the data knows)
SYNC_OPS = {
    "aten._local_scalar_dense": ".item() / float() / int() / bool() of a device tensor",
    "aten.is_nonzero": "bool() of a one-element tensor",
    "aten.nonzero": "output size depends on the data",
    "aten.masked_select": "output size depends on the data",
    "aten.unique": "output size depends on the data", "aten._unique": "output size depends on the data",
    "aten._unique2": "output size depends on the data", "aten.unique_dim": "output size depends on the data",
    "aten.unique_consecutive": "output size depends on the data",
    "aten.equal": "returns a Python bool", "aten.allclose": "returns a Python bool",
    "aten.repeat_interleave": "output size depends on the data (without output_size)",
}  # fmt: skip
CHROMAPIPE = str(Path(__file__).resolve().parent.parent / "src" / "chromapipe")
TORCH_OPTIM = os.sep + os.path.join("torch", "optim") + os.sep
TOP = 15


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes a kernel must touch to read/write ``t`` once: its elements, but stride-0 (broadcast) dimensions
    once and a strided view no more than the span it addresses."""
    if t.layout != torch.strided or t.numel() == 0:
        return t.numel() * t.element_size() if t.layout == torch.strided else 0
    span = 1 + sum((s - 1) * st for s, st in zip(t.shape, t.stride()) if s > 1 and st > 0)
    return min(t.numel(), span) * t.element_size()


def _tensors(x: Any) -> list[torch.Tensor]:
    return [a for a in tree_flatten(x)[0] if isinstance(a, torch.Tensor)]


class Stat:
    __slots__ = ("calls", "kernels", "flops", "bytes", "gpu_s")

    def __init__(self) -> None:
        self.calls = self.kernels = self.flops = self.bytes = 0
        self.gpu_s = 0.0

    def add(self, kernel: bool, flops: int, nbytes: int, gpu_s: float) -> None:
        self.calls += 1
        self.kernels += kernel
        self.flops += flops
        self.bytes += nbytes
        self.gpu_s += gpu_s

    def row(self) -> dict:
        return {
            "calls": self.calls,
            "kernel_calls": self.kernels,
            "gflop": round(self.flops / 1e9, 3),
            "mb": round(self.bytes / 1e6, 2),
            "roofline_ms": round(self.gpu_s * 1e3, 3),
        }


def chromapipe_line() -> str | None:
    """``src/chromapipe/...py:LINE`` of the innermost frame in the package (None outside it)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename.startswith(CHROMAPIPE):
            return f"{os.path.relpath(frame.f_code.co_filename, Path(CHROMAPIPE).parent.parent)}:{frame.f_lineno}"
        frame = frame.f_back
    return None


def innermost(tracker) -> str:  # noqa: ANN001
    parents = [p for p in tracker.parents if p != "Global"]
    return max(parents, key=lambda p: p.count(".")) if parents else "(no module)"


class GraphLabeler(TorchFunctionMode):
    """Labels every autograd node the forward pass creates with (innermost module, source line) of the
    Python call that created it, so that backward ops can be attributed to the forward code they
    differentiate. (ModuleTracker's own backward attribution relies on gradient hooks firing in module
    order, which they need not do: it mis-attributes backward work, e.g. convolution gradients to the
    PalNorm MLPs, whose input gradient arrives last.)"""

    def __init__(self, tracker) -> None:  # noqa: ANN001
        super().__init__()
        self.tracker = tracker
        self.labels: dict[Any, tuple[str, str]] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        if torch.is_grad_enabled():
            label = None
            stack = [t.grad_fn for t in _tensors(out)]
            while stack:
                node = stack.pop()
                if node is None or node in self.labels:
                    continue
                if label is None:
                    label = (innermost(self.tracker), chromapipe_line() or "(outside src/chromapipe)")
                self.labels[node] = label
                stack.extend(f for f, _ in node.next_functions)
        return out


class OpCounter(TorchDispatchMode):
    """Counts every dispatched ATen op: kernel or not, FLOPs (flop_counter's formulas), bytes, where from."""

    def __init__(
        self,
        flop_registry: dict,
        tracker,
        labeler: GraphLabeler | None,
        module_classes: dict[str, str],
        peak_flops: float,
        module_depth: int,
    ) -> None:  # noqa: ANN001
        super().__init__()
        self.flop_registry, self.tracker, self.labeler, self.module_classes = (
            flop_registry,
            tracker,
            labeler,
            module_classes,
        )
        self.peak, self.depth = peak_flops, module_depth
        self.total = {"matmul_conv": Stat(), "other": Stat(), "no_kernel": Stat()}
        self.by_op: dict[str, Stat] = defaultdict(Stat)
        self.by_class: dict[str, Stat] = defaultdict(Stat)
        self.by_path: dict[str, Stat] = defaultdict(Stat)
        self.by_phase: dict[str, Stat] = defaultdict(Stat)
        self.by_net: dict[str, Stat] = defaultdict(Stat)
        self.by_source: dict[str, Stat] = defaultdict(Stat)
        self.syncs: dict[tuple[str, str], int] = defaultdict(int)

    def _where(self) -> tuple[str, str, str]:
        """(phase, module, source). Backward ops: the module and line of the forward call whose autograd
        node they run (or the node's name); optimiser ops: the optimiser function; others: the innermost
        module and src/chromapipe line."""
        if torch._C._current_graph_task_id() != -1:
            node = torch._C._current_autograd_node()
            label = self.labeler.labels.get(node) if self.labeler is not None and node is not None else None
            if label is not None:
                return "backward", label[0], f"{label[1]} [bwd]"
            return "backward", "(unlabelled backward)", f"backward: {node.name() if node is not None else '?'}"
        frame = sys._getframe(2)
        while frame is not None:
            if TORCH_OPTIM in frame.f_code.co_filename:
                return "optimizer", "(optimizer)", f"optimizer: {frame.f_code.co_name}"
            frame = frame.f_back
        return "forward/loss", innermost(self.tracker), chromapipe_line() or "(outside src/chromapipe)"

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = str(func.overloadpacket)  # aten.add (the packet: overloads together)
        schema = func._schema
        mutated = [a.name for a in schema.arguments if a.alias_info is not None and a.alias_info.is_write]
        aliased_out = any(r.alias_info is not None for r in schema.returns)
        outs = _tensors(out)
        kernel = not (func.is_view or name in NO_KERNEL or (not outs and not mutated))
        flops = (
            self.flop_registry[func.overloadpacket](*args, **kwargs, out_val=out)
            if func.overloadpacket in self.flop_registry
            else 0
        )
        nbytes = 0
        if kernel:
            named = dict(zip([a.name for a in schema.arguments], args)) | kwargs
            for arg_name, value in named.items():
                ts = _tensors(value)
                if not ts:
                    continue
                size = sum(tensor_bytes(t) for t in ts)
                write = arg_name in mutated
                read = not (write and arg_name == "self" and name in WRITE_ONLY_SELF) and not (
                    write and arg_name == "out"
                )
                nbytes += size * (int(read) + int(write))
            if not aliased_out:
                nbytes += sum(tensor_bytes(t) for t in outs)
        gpu_s = max(flops / self.peak, nbytes / (H200_HBM_TBPS * 1e12)) if kernel else 0.0
        kind = "no_kernel" if not kernel else ("matmul_conv" if func.overloadpacket in self.flop_registry else "other")
        phase, module, source = self._where()
        path = ".".join(module.split(".")[: self.depth])
        net = module.split(".")[0]
        for stat in (
            self.total[kind],
            self.by_op[name],
            self.by_class[self.module_classes.get(module, module)],
            self.by_path[path],
            self.by_phase[phase],
            self.by_net[net],
            self.by_source[source],
        ):
            stat.add(kernel, flops, nbytes, gpu_s)
        if name in SYNC_OPS and not (name == "aten.repeat_interleave" and kwargs.get("output_size") is not None):
            self.syncs[(name, source)] += 1
        elif name == "aten.index" and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else [])
        ):
            self.syncs[("aten.index (boolean mask)", source)] += 1
        return out


# -- fused attention what-if (--fused-sdpa) ---------------------------------------------------------------------
@torch.library.custom_op("profile_step::fused_attention", mutates_args=())
def fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One op standing in for a fused (memory-efficient) attention forward: out and logsumexp."""
    s = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    lse = torch.logsumexp(s, dim=-1)
    return torch.softmax(s, dim=-1) @ v, lse


@fused_attention.register_fake
def _(q, k, v):  # noqa: ANN001, ANN202
    return q.new_empty(*q.shape[:-1], v.shape[-1]), q.new_empty(q.shape[:-1])


@torch.library.custom_op("profile_step::fused_attention_backward", mutates_args=())
def fused_attention_backward(
    dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, lse: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One op standing in for the fused attention backward (recomputes the probabilities from lse)."""
    scale = 1 / math.sqrt(q.shape[-1])
    p = torch.exp(q @ k.transpose(-1, -2) * scale - lse[..., None])
    dv = p.transpose(-1, -2) @ dout
    dp = dout @ v.transpose(-1, -2)
    ds = p * (dp - (dout * out).sum(-1, keepdim=True)) * scale
    return ds @ k, ds.transpose(-1, -2) @ q, dv


def _setup_ctx(ctx, inputs, output) -> None:  # noqa: ANN001
    ctx.save_for_backward(*inputs, *output)


def _backward(ctx, dout, _dlse):  # noqa: ANN001, ANN202
    q, k, v, out, lse = ctx.saved_tensors
    return fused_attention_backward(dout.contiguous(), q, k, v, out, lse)


fused_attention.register_autograd(_backward, setup_context=_setup_ctx)


def _fused_fwd_flops(q_shape, k_shape, v_shape, *args, **kwargs) -> int:  # noqa: ANN001
    return sdpa_flop_count(q_shape, k_shape, v_shape)


def _fused_bwd_flops(dout_shape, q_shape, k_shape, v_shape, *args, **kwargs) -> int:  # noqa: ANN001
    return sdpa_backward_flop_count(dout_shape, q_shape, k_shape, v_shape)


FUSED_FLOPS = {
    torch.ops.profile_step.fused_attention: _fused_fwd_flops,
    torch.ops.profile_step.fused_attention_backward: _fused_bwd_flops,
}


def fused_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):  # noqa: ANN001, ANN201
    """F.scaled_dot_product_attention as a fused kernel would run it (contiguous q/k/v, as the fix would make
    them). Only the plain call PalGAN makes is supported."""
    if attn_mask is not None or dropout_p or is_causal or scale is not None or enable_gqa:
        raise NotImplementedError("--fused-sdpa models plain attention only")
    return fused_attention(query.contiguous(), key.contiguous(), value.contiguous())[0]


# -- one model ---------------------------------------------------------------------------------------------------
def full_step(recipe, G, D, opts, batch, n_critic: int, amp: bool) -> None:  # noqa: ANN001
    """All n_critic iterations of one generator step, as bench_train's loop runs them."""
    for i in range(n_critic):
        train_step(recipe, G, D, *opts, batch, (i + 1) % n_critic == 0, amp)


def module_classes(**models: torch.nn.Module) -> dict[str, str]:
    """ModuleTracker's names (root class name + dotted path) -> the module's class name."""
    names = {}
    for model in models.values():
        root = type(model).__name__
        for path, m in model.named_modules():
            names[f"{root}.{path}" if path else root] = type(m).__name__
    return names


def table(stats: dict[str, Stat], key: str, n: int = TOP) -> list[dict]:
    rows = sorted(stats.items(), key=lambda kv: getattr(kv[1], key), reverse=True)[:n]
    return [{"name": k, **s.row()} for k, s in rows]


def torch_profile(fn) -> dict:  # noqa: ANN001
    """torch.profiler over ``fn()`` on the CPU: leaf aten events (no aten children) and top ops by self time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        fn()
    events = [e for e in prof.events() if e.name.startswith("aten::")]
    leaves = [e for e in events if not any(c.name.startswith("aten::") for c in e.cpu_children)]
    top_level = [e for e in events if e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")]
    self_us: dict[str, float] = defaultdict(float)
    for e in events:
        self_us[e.name] += e.self_cpu_time_total
    total_us = sum(self_us.values())
    return {
        "aten_events": len(events),
        "leaf_aten_events": len(leaves),
        "top_level_aten_events": len(top_level),
        "aten_self_cpu_s": round(total_us / 1e6, 3),
        "top_self_cpu": [
            {"name": k, "self_cpu_s": round(v / 1e6, 3), "share": round(v / total_us, 3)}
            for k, v in sorted(self_us.items(), key=lambda kv: -kv[1])[:10]
        ],
    }


def profile_model(
    cfg, batch_size: int, amp: bool, channels_last: bool, fused: bool, module_depth: int, with_profiler: bool
) -> dict:  # noqa: ANN001
    device = torch.device("cpu")
    recipe, nets = training_pair(cfg, device, channels_last)
    G, D, opts = nets.G, nets.D, (nets.opt_g, nets.opt_d)
    gen = torch.Generator().manual_seed(0)
    raw = {
        "L": torch.rand(batch_size, 1, cfg.resolution, cfg.resolution, generator=gen) * 100,
        "ab": torch.randn(batch_size, 2, cfg.resolution, cfg.resolution, generator=gen) * 25,
        "label": torch.zeros(batch_size, dtype=torch.long),
    }  # fmt: skip
    batch = random_batch(recipe, batch_size, cfg.resolution, device, gen, channels_last)
    peak = (H200_BF16_TFLOPS if amp else H200_TF32_TFLOPS) * 1e12
    step = lambda: full_step(recipe, G, D, opts, batch, cfg.n_critic, amp)  # noqa: E731

    t0, c0 = time.perf_counter(), time.process_time()
    step()  # warm-up: Adam's state, oneDNN primitives
    warm = (time.perf_counter() - t0, time.process_time() - c0)

    custom = FUSED_FLOPS if fused else {}
    patched = F.scaled_dot_product_attention
    if fused:
        F.scaled_dot_product_attention = fused_sdpa
    try:
        counter = FlopCounterMode(display=False, custom_mapping=custom)
        with counter:
            labeler = GraphLabeler(counter.mod_tracker)
            ops = OpCounter(
                counter.flop_registry, counter.mod_tracker, labeler, module_classes(G=G, D=D), peak, module_depth
            )
            t0 = time.perf_counter()
            with labeler, ops:
                step()
            counted_s = time.perf_counter() - t0
            labeler.labels.clear()  # the step's autograd graph
        # the batch's own preparation (palette histogram etc.): outside the step in bench_train, per batch in training
        prep = OpCounter(counter.flop_registry, counter.mod_tracker, None, {}, peak, module_depth)
        with prep:
            recipe.prepare_batch(raw)
    finally:
        F.scaled_dot_product_attention = patched
    prof = None
    if with_profiler:
        t0 = time.perf_counter()
        prof = torch_profile(step)
        prof["wall_s"] = round(time.perf_counter() - t0, 2)

    mm, other, none = ops.total["matmul_conv"], ops.total["other"], ops.total["no_kernel"]
    kernels = mm.kernels + other.kernels
    t_flops = mm.flops / peak
    t_bytes = (mm.bytes + other.bytes) / (H200_HBM_TBPS * 1e12)
    t_bytes_other = other.bytes / (H200_HBM_TBPS * 1e12)
    t_launch = kernels * LAUNCH_S
    t_ops = mm.gpu_s + other.gpu_s  # sum over kernels of max(compute, memory)
    terms = {"flops": t_flops, "bytes": t_bytes, "launch": t_launch}
    ms = lambda s: round(s * 1e3, 3)  # noqa: E731
    return {
        "arch": cfg.arch,
        "resolution": cfg.resolution,
        "batch_size": batch_size,
        "n_critic": cfg.n_critic,
        "amp_bf16": amp,
        "channels_last": channels_last,
        "fused_sdpa_what_if": fused,
        "cpu_warmup_step_s": round(warm[0], 2),
        "cpu_warmup_step_cpu_s": round(warm[1], 2),
        "cpu_counted_step_s": round(counted_s, 2),
        "aten_calls": mm.calls + other.calls + none.calls,
        "kernel_calls": kernels,
        "no_kernel_calls": none.calls,
        "matmul_conv_calls": mm.calls,
        "other_kernel_calls": other.calls,
        "matmul_conv_gflop": round(mm.flops / 1e9, 2),
        # FlopCounterMode over the same step: must match matmul_conv_gflop
        "flop_counter_gflop": round(counter.get_total_flops() / 1e9, 2),
        "gflop_per_image": round(mm.flops / 1e9 / batch_size, 2),
        "matmul_conv_gb": round(mm.bytes / 1e9, 3),
        "other_gb": round(other.bytes / 1e9, 3),
        "other_share_of_bytes": round(other.bytes / max(1, mm.bytes + other.bytes), 3),
        "arithmetic_intensity_flop_per_byte": round(mm.flops / max(1, mm.bytes + other.bytes), 1),
        "roofline_h200": {
            "peak_tflops": peak / 1e12,
            "t_flops_ms": ms(t_flops),
            "t_bytes_ms": ms(t_bytes),
            "t_bytes_other_ms": ms(t_bytes_other),
            "t_launch_ms": ms(t_launch),
            "t_per_op_ms": ms(t_ops),  # sum_i max(flops_i/peak, bytes_i/BW): kernels run one after another
            "lower_bound_ms": ms(max(t_ops, t_launch)),  # the GPU's work or the host's issuing, whichever is longer
            "dominant": max(terms, key=terms.get),
            "bound_by": "launch (host)" if t_launch > t_ops else "GPU work",
            "images_per_s_at_bound": round(batch_size / max(t_ops, t_launch), 1),
        },
        "by_phase": {k: v.row() for k, v in sorted(ops.by_phase.items())},
        "by_network": {k: v.row() for k, v in sorted(ops.by_net.items())},
        "top_ops_by_bytes": table(ops.by_op, "bytes"),
        "top_ops_by_calls": table(ops.by_op, "kernels"),
        "top_ops_by_roofline": table(ops.by_op, "gpu_s"),
        "top_module_classes_by_bytes": table(ops.by_class, "bytes"),
        "top_module_classes_by_calls": table(ops.by_class, "kernels"),
        "top_module_paths_by_roofline": table(ops.by_path, "gpu_s", 25),
        "top_sources_by_bytes": table(ops.by_source, "bytes", 25),
        "top_sources_by_calls": table(ops.by_source, "kernels", 25),
        "host_syncs": [{"op": op, "where": where, "calls": n,
                        "why": SYNC_OPS.get(op, "boolean-mask indexing: output size depends on the data")}
                       for (op, where), n in sorted(ops.syncs.items())],
        "prepare_batch": {"calls": sum(s.calls for s in prep.total.values()),
                          "kernel_calls": prep.total["matmul_conv"].kernels + prep.total["other"].kernels,
                          "gb": round((prep.total["matmul_conv"].bytes + prep.total["other"].bytes) / 1e9, 4),
                          "top_ops_by_bytes": table(prep.by_op, "bytes", 5),
                          "host_syncs": [{"op": op, "where": where, "calls": n}
                                         for (op, where), n in sorted(prep.syncs.items())]},
        "torch_profiler": prof,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params-paper.yaml")
    ap.add_argument("--models", help="comma-separated subset of the params' models (default: all)")
    ap.add_argument("--batch-size", type=int, default=8, help="images per step (default 8: CPU time)")
    ap.add_argument("--resolution", type=int, help="override every model's resolution (e.g. 64 for a smoke test)")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast (CPU autocast: indicative only)")
    ap.add_argument(
        "--channels-last", action="store_true", help="NHWC weights and batches (as bench_train --channels-last)"
    )
    ap.add_argument(
        "--fused-sdpa", action="store_true", help="count attention as a fused kernel would run it (what-if)"
    )
    ap.add_argument("--threads", type=int, help="torch.set_num_threads")
    ap.add_argument("--module-depth", type=int, default=3, help="module path depth of the by-path breakdown")
    ap.add_argument("--no-torch-profiler", action="store_true", help="skip the torch.profiler cross-check step")
    ap.add_argument("--out", default="bench/results/profile-step-cpu.json")
    ap.add_argument("--append", action="store_true", help="add to / replace entries of an existing --out file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    params = load_params(args.params)
    names = args.models.split(",") if args.models else list(params.models)
    out = Path(args.out)
    results = json.loads(out.read_text()) if args.append and out.exists() else {}
    results.update({
        "device": device_name(torch.device("cpu")),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "params_file": args.params,
        "h200_constants": {"bf16_tflops": H200_BF16_TFLOPS, "tf32_tflops": H200_TF32_TFLOPS,
                           "hbm_tb_per_s": H200_HBM_TBPS, "launch_us": LAUNCH_S * 1e6, "sources": SOURCE},
        "notes": [
            "one full step = n_critic critic iterations + the generator iteration, after one warm-up step; "
            "counts are per step",
            "aten_calls: every op dispatched below autograd (TorchDispatchMode); "
            "kernel_calls exclude views, empty, detach",
            "bytes: input + output tensor sizes per op (a lower bound on traffic); "
            "matmul_conv = ops with a flop_counter formula",
            "roofline: t_flops = matmul/conv FLOPs / peak (TF32 for fp32, bf16 with amp), "
            "t_bytes = all bytes / HBM BW, t_launch = kernel_calls x launch cost",
        ],
    })  # fmt: skip
    runs = results.setdefault("runs", {})
    commands = results.setdefault("commands", [])
    commands.append(shlex.join(["python", "bench/profile_step.py", *sys.argv[1:]]))
    for model in names:
        cfg = params.model(model)
        if args.resolution:
            cfg = dataclasses.replace(cfg, resolution=args.resolution)
        key = (
            f"{model}-b{args.batch_size}"
            + ("-bf16" if args.amp else "")
            + ("-cl" if args.channels_last else "")
            + ("-fused-sdpa" if args.fused_sdpa else "")
            + (f"-r{cfg.resolution}" if args.resolution else "")
        )
        row = profile_model(
            cfg,
            args.batch_size,
            args.amp,
            args.channels_last,
            args.fused_sdpa,
            args.module_depth,
            not args.no_torch_profiler,
        )
        row["model"] = model
        row["load_average"] = [round(x, 2) for x in os.getloadavg()]
        runs[key] = row
        r = row["roofline_h200"]
        print(f"{key}: {row['aten_calls']} aten calls ({row['kernel_calls']} kernels), "
              f"{row['matmul_conv_gflop']} GFLOP matmul/conv (FlopCounterMode {row['flop_counter_gflop']}), "
              f"other {row['other_gb']} GB, matmul/conv {row['matmul_conv_gb']} GB; "
              f"H200 t_flops {r['t_flops_ms']} t_bytes {r['t_bytes_ms']} t_launch {r['t_launch_ms']} "
              f"per-op {r['t_per_op_ms']} ms; "
              f"CPU step {row['cpu_warmup_step_s']} s", flush=True)  # fmt: skip
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))  # after every model: a long run keeps what it has
    print("wrote", out)


if __name__ == "__main__":
    main()
