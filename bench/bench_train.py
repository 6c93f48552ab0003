"""Training throughput per model: images/s of the trainer's own iteration (D step + G every n_critic).

Runs the training core's own loop (`chromapipe.training.trainer.fit`, on networks from `build_networks`)
on random batches at each model's resolution, on CPU or GPU, optionally with bf16 autocast and the fast-path
options (`--channels-last`, `--compile`: `chromapipe.training.performance`), and writes
bench/results/train-<device>[-bf16][-cl][-compile][-cudnnb][-b<batch>].json. Models and their settings come from a
params file (default: params.yaml); --batch-size overrides every model's batch size.

Wall time is what counts, but on a shared machine other processes inflate it: each model also records
the process's CPU seconds per step (all threads), which other load inflates far less. Besides the speed it
records the model FLOPs of one training iteration per image (FlopCounterMode:
convolutions and matmuls, forward + backward of G and D, averaged over n_critic iterations) and the
achieved TFLOP/s; on CUDA also the model FLOP utilisation (MFU) against the device's dense peak: given
with --peak-tflops, else from PEAK_TFLOPS below (bf16 tensor-core peak with --amp; TF32 peak without,
since cuDNN runs fp32 convolutions in TF32 by default and convolutions are nearly all the FLOPs).

    python bench/bench_train.py --device cpu --threads 2 --steps 5 --warmup 1
    python bench/bench_train.py --params params-paper.yaml --device cuda --amp --batch-size 32 --channels-last --compile
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import get_args

import torch
from machine import cpu_name  # a sibling script, not a package

from chromapipe.config import CompileMode, ModelConfig, TrainConfig, load_params
from chromapipe.models.base import Recipe, count_parameters
from chromapipe.models.registry import build_recipe
from chromapipe.training.performance import (
    CompileWatch,
    apply_to_pair,
    batch_to_channels_last,
    count_flops,
    discriminator_compilable,
)
from chromapipe.training.step import train_step
from chromapipe.training.trainer import Networks, build_networks, fit

#: dense (no sparsity) peak TFLOP/s by device-name fragment: (bf16 tensor core, TF32 tensor core).
#: NVIDIA datasheets: H100 SXM5 989.4 / 494.7 (the "H100 80GB HBM3" torch reports is the SXM part),
#: H100 PCIe 756.5 / 378.0, H200 (SXM) 989.4 / 494.7 (same compute as H100 SXM, more and faster memory).
PEAK_TFLOPS = {
    "H200": (989.4, 494.7),
    "H100 PCIe": (756.5, 378.0),
    "H100": (989.4, 494.7),
}


BATCHES_IN_TURN = 4


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()


def peak_tflops(name: str, amp: bool, given: float | None) -> tuple[float | None, str]:
    """The dense peak to divide by, and a sentence saying where it came from."""
    if given:
        return given, f"{given} TFLOP/s given with --peak-tflops"
    for fragment, (bf16, tf32) in PEAK_TFLOPS.items():
        if fragment in name:
            kind = "bf16" if amp else "TF32 (cuDNN's default for fp32 convolutions)"
            return (
                bf16 if amp else tf32
            ), f"{fragment} dense {kind} peak, NVIDIA datasheet (SXM figure unless the name says PCIe)"
    return None, f"no peak known for {name!r}: pass --peak-tflops"


def random_batch(
    recipe: Recipe, batch_size: int, resolution: int, device: torch.device, gen: torch.Generator, channels_last: bool
) -> dict[str, torch.Tensor]:
    batch = recipe.prepare_batch({
        "L": (torch.rand(batch_size, 1, resolution, resolution, generator=gen) * 100).to(device),
        "ab": (torch.randn(batch_size, 2, resolution, resolution, generator=gen) * 25).to(device),
        "label": torch.zeros(batch_size, dtype=torch.long).to(device),
    })  # fmt: skip
    return batch_to_channels_last(batch) if channels_last else batch


def flops_per_image(recipe: Recipe, nets: Networks, batch: dict[str, torch.Tensor], n_critic: int, amp: bool) -> int:
    """Model FLOPs of an average training iteration per image: one generator iteration (D step + G step)
    and n_critic - 1 critic-only iterations, over n_critic. Runs real steps (the weights move; harmless)."""
    nets_args = (nets.G, nets.D, nets.opt_g, nets.opt_d)
    with_g = count_flops(lambda: train_step(recipe, *nets_args, batch, True, amp))
    critic_only = count_flops(lambda: train_step(recipe, *nets_args, batch, False, amp)) if n_critic > 1 else 0
    return round((with_g + (n_critic - 1) * critic_only) / n_critic / batch["L"].shape[0])


def training_pair(
    cfg: ModelConfig, device: torch.device, channels_last: bool, steps: int = 1
) -> tuple[Recipe, Networks]:
    """The recipe and its networks on ``device`` as the training core builds them (``trainer.build_networks``:
    layout, optimisers, schedules over ``steps``), uncompiled and unwrapped (one process)."""
    recipe = build_recipe(cfg)
    recipe.setup(device)
    return recipe, build_networks(recipe, cfg, TrainConfig(channels_last=channels_last), steps, device)


def bench_model(
    cfg: ModelConfig,
    batch_size: int,
    device: torch.device,
    steps: int,
    warmup: int,
    amp: bool,
    channels_last: bool,
    compile: bool,
    compile_mode: str = "default",
) -> dict:
    if compile:  # every kind of iteration (critic-only, generator) must be compiled before timing
        warmup = max(warmup, cfg.n_critic + 1)
    recipe, nets = training_pair(cfg, device, channels_last, steps=warmup + steps)
    gen = torch.Generator().manual_seed(0)
    batch = lambda: random_batch(recipe, batch_size, cfg.resolution, device, gen, channels_last)  # noqa: E731
    flops = flops_per_image(recipe, nets, batch(), cfg.n_critic, amp)  # before compiling: eager ops only
    compile_d = compile and discriminator_compilable(recipe)
    watch = CompileWatch(device.type, compile_mode)
    nets.G, nets.D = apply_to_pair(  # in place, after the optimisers: fresh Dynamo caches per model
        recipe, nets.G, nets.D, channels_last=False, compile=compile, compile_mode=compile_mode
    )
    run = functools.partial(fit, recipe, nets, n_critic=cfg.n_critic, images_per_step=batch_size, amp=amp)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    # a few distinct batches made on the device before timing, used in turn: the timed loop is the step alone
    # (drawing them on the host and copying them every step understated it: reports/benchmarks.md, H200 section)
    batches = itertools.cycle([batch() for _ in range(BATCHES_IN_TURN)])
    warm0 = time.perf_counter()
    run(batches, steps=warmup)  # the training core's loop (trainer.fit), as the pipeline trains
    sync()
    warmup_seconds = time.perf_counter() - warm0  # with compile: mostly compiling (and recording CUDA graphs)
    compiled, _ = watch.look()  # this model's graphs (all compiled by now)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0, cpu0 = time.perf_counter(), time.process_time()
    run(batches, steps=warmup + steps, start_step=warmup)  # no log or checkpoint steps: one host sync, at the end
    sync()
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - cpu0
    images_per_s = steps * batch_size / seconds
    return {
        "arch": cfg.arch,
        "resolution": cfg.resolution,
        "batch_size": batch_size,
        "n_critic": cfg.n_critic,
        "steps": steps,
        "warmup": warmup,
        "warmup_seconds": round(warmup_seconds, 1),
        "compiled": {"G": compile, "D": compile_d, "mode": compile_mode if compile else None}
        | (compiled if compile else {}),
        "seconds_per_step": round(seconds / steps, 4),
        "cpu_seconds_per_step": round(
            cpu_seconds / steps, 4
        ),  # this process, all threads: what other load does not inflate as much
        "images_per_s": round(images_per_s, 3),
        "model_gflops_per_image": round(flops / 1e9, 2),
        "achieved_tflops": round(flops * images_per_s / 1e12, 4),
        "generator_params": count_parameters(nets.G),
        "discriminator_params": count_parameters(nets.D),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None,
    }


def default_out(args: argparse.Namespace, device: torch.device) -> Path:
    parts = [
        f"train-{device.type}",
        "-bf16" * args.amp,
        "-cl" * args.channels_last,
        "-compile" * args.compile,
        f"-{args.compile_mode}" * (args.compile and args.compile_mode != "default"),
        "-cudnnb" * args.cudnn_benchmark,
        f"-b{args.batch_size}" if args.batch_size else "",
    ]
    return Path("bench/results") / ("".join(parts) + ".json")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast (GPU)")
    ap.add_argument("--channels-last", action="store_true", help="NHWC weights and batches")
    ap.add_argument(
        "--compile", action="store_true", help="torch.compile G (and D unless its loss has a gradient penalty)"
    )
    ap.add_argument(
        "--compile-mode",
        default="default",
        choices=get_args(CompileMode),
        help="torch.compile's mode (train.compile_mode): reduce-overhead = CUDA graphs",
    )
    ap.add_argument("--cudnn-benchmark", action="store_true", help="cuDNN autotuning (train.cudnn_benchmark)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
    ap.add_argument("--peak-tflops", type=float, help="dense peak of the device for the MFU (default: PEAK_TFLOPS)")
    ap.add_argument("--models", help="comma-separated subset of the params' models")
    ap.add_argument(
        "--out", help="output JSON (default bench/results/train-<device>[-bf16][-cl][-compile][-b<batch>].json)"
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    params = load_params(args.params)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    names = args.models.split(",") if args.models else list(params.models)
    name = device_name(device)
    peak, peak_source = (
        peak_tflops(name, args.amp, args.peak_tflops)
        if device.type == "cuda" or args.peak_tflops
        else (None, "CPU: no peak assumed")
    )
    results = {
        "device": name,
        "device_type": device.type,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "dtype": "bf16 autocast" if args.amp else "fp32",
        "amp_bf16": args.amp,
        "channels_last": args.channels_last,
        "compile": args.compile,
        "compile_mode": args.compile_mode if args.compile else None,
        "cudnn_benchmark": args.cudnn_benchmark,
        "params_file": args.params,
        "peak_tflops": peak,
        "peak_assumption": peak_source,
        "flops_note": "model FLOPs = convolutions + matmuls of G and D, forward + backward, per image, "
        "per average iteration (FlopCounterMode)",
        "command": shlex.join(["python", "bench/bench_train.py", *sys.argv[1:]]),
        "load_average_before": [
            round(x, 2) for x in os.getloadavg()
        ],  # a shared machine's other load slows every figure
        "models": {},
    }
    out = Path(args.out) if args.out else default_out(args, device)
    out.parent.mkdir(parents=True, exist_ok=True)
    for model in names:
        cfg = params.model(model)
        row = bench_model(
            cfg,
            args.batch_size or cfg.batch_size,
            device,
            args.steps,
            args.warmup,
            args.amp,
            args.channels_last,
            args.compile,
            args.compile_mode,
        )
        row["mfu"] = round(row["achieved_tflops"] / peak, 4) if peak else None
        results["models"][model] = row
        print(model, row, flush=True)
        results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        results["complete"] = len(results["models"]) == len(names)
        out.write_text(json.dumps(results, indent=1))  # after every model: a run cut short keeps what finished
    print("wrote", out)


if __name__ == "__main__":
    main()
