"""Batched generator inference: milliseconds per image of ``recipe.predict`` at each model's resolution.

What ``chromapipe colorize`` and the evaluate stage call per batch: L* (B,1,R,R) in → the generator in eval
mode under ``torch.inference_mode`` → a*b* in Lab units out, already on the device. Variants: fp32 (cuDNN's
default TF32 convolutions on a GPU) or bf16 autocast, NCHW or channels_last, for several batch sizes.
Timed with CUDA events on a GPU (median of ``--repeats`` timed batches after ``--warmup``), the host clock
on a CPU; inputs rotate among 4 distinct random batches made on the device before timing. Random weights:
the time does not depend on them (ChromaGAN's VGG16 backbone is set to random init when its weights file
is not there). The paper's figure for ChromaGAN is 4.4 ms per image on a Quadro P6000
(docs/papers.md#chromagan-hyperparameters).

    python bench/bench_inference.py --device cuda --models chromagan pix2pix palgan --batch-sizes 1 16 64 256
    python bench/bench_inference.py --device cpu --models chromagan --batch-sizes 1 2 --repeats 2 --out /tmp/inf.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch

from chromapipe.config import load_params
from chromapipe.models.base import Recipe
from chromapipe.models.registry import build_recipe
from chromapipe.training.performance import apply_performance_options

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import device_name  # noqa: E402  (a sibling script, not a package)

INPUTS_IN_TURN = 4
VARIANTS = {"fp32": (False, False), "fp32-cl": (False, True), "bf16-cl": (True, True)}


def time_ms(fn, device: torch.device, warmup: int, repeats: int) -> float:  # noqa: ANN001
    """Median milliseconds of ``fn(i)`` over ``repeats`` calls after ``warmup`` calls."""
    for i in range(warmup):
        fn(i)
    times = []
    for i in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(i)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn(i)
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def predict_batch(recipe: Recipe, G: torch.nn.Module, inputs: list, device: torch.device, amp: bool, i: int) -> None:
    """One timed call: ``recipe.predict`` on the ``i``-th input batch (in turn), fp32 or bf16 autocast."""
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        recipe.predict(G, inputs[i % INPUTS_IN_TURN])


def bench_model(
    cfg, device: torch.device, batch_sizes: list[int], variants: list[str], warmup: int, repeats: int
) -> dict:  # noqa: ANN001
    options = dict(cfg.options)
    if options.get("backbone_weights") not in (None, "random"):
        options["backbone_weights"] = "random"  # speed does not depend on weights; the file may not be here
    recipe = build_recipe(replace(cfg, options=options))
    recipe.setup(device)
    rows = []
    for variant in variants:
        amp, channels_last = VARIANTS[variant]
        G = apply_performance_options(
            recipe.build_generator().eval().to(device), channels_last=channels_last, compile=False
        )
        for bs in batch_sizes:
            gen = torch.Generator().manual_seed(bs)
            inputs = [
                (torch.rand(bs, 1, recipe.resolution, recipe.resolution, generator=gen) * 100).to(device)
                for _ in range(INPUTS_IN_TURN)
            ]
            if channels_last:
                inputs = [x.contiguous(memory_format=torch.channels_last) for x in inputs]
            try:
                # the batch function gets this row's generator, inputs and precision as arguments: a closure
                # over the loop variables would see later values, and no name outlives the row to keep G
                # alive past the ``del G`` that frees its memory before the next variant
                ms = time_ms(partial(predict_batch, recipe, G, inputs, device, amp), device, warmup, repeats)
            except torch.OutOfMemoryError:
                rows.append({"variant": variant, "batch_size": bs, "error": "out of memory"})
                break
            rows.append(
                {
                    "variant": variant,
                    "batch_size": bs,
                    "ms_per_batch": round(ms, 3),
                    "ms_per_image": round(ms / bs, 4),
                    "images_per_s": round(bs * 1e3 / ms, 1),
                }
            )
            print(cfg.arch, rows[-1], flush=True)
        del G
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {
        "arch": cfg.arch,
        "resolution": recipe.resolution,
        "weights": "random (timing does not depend on them)",
        "rows": rows,
        "best_ms_per_image": min((r["ms_per_image"] for r in rows if "ms_per_image" in r), default=None),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", nargs="+", default=["chromagan"])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64, 256])
    ap.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", type=Path, help="default bench/results/inference-<device>.json")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True  # fixed shapes per row: each row tunes once in its warm-up
    params = load_params(args.params)
    result = {
        "benchmark": "batched generator inference (recipe.predict, eval, inference_mode)",
        "device": device_name(device),
        "torch": torch.__version__,
        "cudnn_benchmark": True,
        "timer": "CUDA events" if device.type == "cuda" else "host clock",
        "statistic": f"median of {args.repeats} batches after {args.warmup} warm-up batches",
        "command": shlex.join(["python", "bench/bench_inference.py", *sys.argv[1:]]),
        "models": {},
    }
    for name in args.models:
        result["models"][name] = bench_model(
            params.model(name), device, args.batch_sizes, args.variants, args.warmup, args.repeats
        )
    out = args.out or Path(f"bench/results/inference-{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({n: r["best_ms_per_image"] for n, r in result["models"].items()}), "ms/image (best)")
    print("wrote", out)


if __name__ == "__main__":
    main()
