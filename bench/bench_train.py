"""Training throughput per model: images/s of the trainer's own iteration (D step + G every n_critic).

Runs `chromapipe.training.loop.train_step` on random batches at each model's resolution, on CPU or GPU,
optionally with bf16 autocast, and writes bench/results/train-<device>.json. Models and their settings
come from a params file (default: params.yaml); --batch-size overrides every model's batch size.

    python bench/bench_train.py [--params params.yaml] [--device cpu|cuda] [--amp] [--steps 5] [--models a,b]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from chromapipe.config import load_params
from chromapipe.models.base import count_parameters
from chromapipe.models.registry import build_recipe
from chromapipe.training.step import train_step


def bench_model(cfg, batch_size: int, device: torch.device, steps: int, warmup: int, amp: bool) -> dict:
    recipe = build_recipe(cfg)
    recipe.setup(device)
    G, D = recipe.build_generator().to(device), recipe.build_discriminator().to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=cfg.betas, fused=True)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=cfg.betas, fused=True)
    r = cfg.resolution
    gen = torch.Generator().manual_seed(0)

    def batch() -> dict[str, torch.Tensor]:
        return recipe.prepare_batch({
            "L": (torch.rand(batch_size, 1, r, r, generator=gen) * 100).to(device),
            "ab": (torch.randn(batch_size, 2, r, r, generator=gen) * 25).to(device),
            "label": torch.zeros(batch_size, dtype=torch.long).to(device),
        })

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for i in range(warmup):
        train_step(recipe, G, D, opt_g, opt_d, batch(), (i + 1) % cfg.n_critic == 0, amp)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for i in range(steps):
        train_step(recipe, G, D, opt_g, opt_d, batch(), (i + 1) % cfg.n_critic == 0, amp)
    sync()
    seconds = time.perf_counter() - t0
    return {
        "arch": cfg.arch,
        "resolution": r,
        "batch_size": batch_size,
        "n_critic": cfg.n_critic,
        "steps": steps,
        "seconds_per_step": round(seconds / steps, 4),
        "images_per_s": round(steps * batch_size / seconds, 3),
        "generator_params": count_parameters(G),
        "discriminator_params": count_parameters(D),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast (GPU)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--models", help="comma-separated subset of the params' models")
    ap.add_argument("--out", help="output JSON (default bench/results/train-<device>[-amp].json)")
    args = ap.parse_args()
    params = load_params(args.params)
    device = torch.device(args.device)
    names = args.models.split(",") if args.models else list(params.models)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    results = {
        "device": device_name,
        "device_type": device.type,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "amp_bf16": args.amp,
        "params_file": args.params,
        "command": "python bench/bench_train.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v not in (None, False)),
        "models": {},
    }
    for name in names:
        cfg = params.model(name)
        results["models"][name] = bench_model(cfg, args.batch_size or cfg.batch_size, device, args.steps, args.warmup, args.amp)
        print(name, results["models"][name], flush=True)
    out = Path(args.out or f"bench/results/train-{device.type}{'-amp' if args.amp else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print("wrote", out)


if __name__ == "__main__":
    main()
