"""Data-parallel step time on two gloo workers (CPU): plain DDP against the world-size-invariant training.

Two processes (``torch.distributed``, gloo, one thread each, as Ray Train's CPU workers run) train each model
through the training core (``training.trainer.build_networks`` + ``fit``) on random batches, global batch
``--batch-size`` (each worker half of it), in three variants, side by side in one run (alternating, ``--rounds``
times, so drift shows):

- ``plain``: DDP as before: each worker's BatchNorm over its own half, gradients as the kernels lay them out;
- ``aligned``: gradients given the parameters' strides for DDP's buckets (``training.grad_layout``), no BatchNorm
  synchronisation (``train.sync_batchnorm: false``);
- ``synced``: both, the default (``train.sync_batchnorm: true``).

Per (model, variant): the median seconds per step after ``--warmup`` steps, and whether DDP warned that gradient
strides do not match its bucket views (the warning means a copy per step). Writes bench/results/ddp-<label>.json.

    python bench/bench_ddp.py [--models pix2pix,chromagan,palgan] [--batch-size 4] [--steps 3] [--rounds 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from chromapipe.config import load_params
from chromapipe.models.randomness import batch_split
from chromapipe.models.registry import build_recipe
from chromapipe.training.sync_batchnorm import count_batchnorms
from chromapipe.training.trainer import Hook, Networks, build_networks, fit, seed_everything

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import random_batch  # noqa: E402  (sibling scripts, not a package)
from machine import cpu_name  # noqa: E402

VARIANTS = ("plain", "aligned", "synced")
STRIDE_WARNING = "Grad strides do not match bucket view strides"


class StepTimes(Hook):
    """Wall time of each step, all workers in step (a barrier before reading the clock)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.last = time.perf_counter()

    def after_step(self, step: int, nets: Networks) -> None:
        dist.barrier()
        now = time.perf_counter()
        self.times.append(now - self.last)
        self.last = now


def one_variant(name: str, variant: str, args: argparse.Namespace, rank: int) -> dict:
    params = load_params(args.params)
    cfg = dataclasses.replace(params.model(name), batch_size=args.batch_size)
    tc = dataclasses.replace(params.train, sync_batchnorm=variant == "synced")
    device = torch.device("cpu")
    seed_everything(0)
    recipe = build_recipe(cfg)
    recipe.setup(device)
    steps = args.warmup + args.steps
    # "plain" is the networks as built before world-size invariance: no synchronisation, no aligned gradients
    nets = build_networks(
        recipe, cfg, tc, steps, device, world_size=1 if variant == "plain" else 2, wrap=DistributedDataParallel
    )
    gen = torch.Generator().manual_seed(rank)
    local = args.batch_size // 2
    batches = itertools.cycle([random_batch(recipe, local, cfg.resolution, device, gen, False) for _ in range(2)])
    timer = StepTimes()
    with warnings.catch_warnings(record=True) as caught, batch_split(rank, 2):
        warnings.simplefilter("always")
        fit(recipe, nets, batches, steps=steps, n_critic=cfg.n_critic, images_per_step=args.batch_size, hooks=[timer])
    return {
        "seconds_per_step": round(statistics.median(timer.times[args.warmup :]), 3),
        "step_seconds": [round(t, 3) for t in timer.times],
        "ddp_stride_warning": any(STRIDE_WARNING in str(w.message) for w in caught),
        "synchronised_batchnorms": count_batchnorms(nets.G) + count_batchnorms(nets.D) if variant == "synced" else 0,
    }


def worker(rank: int, init: str, args: argparse.Namespace, out: dict) -> None:
    torch.set_num_threads(1)  # as a Ray Train CPU worker (OMP_NUM_THREADS=1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        rows = []
        for round_ in range(args.rounds):
            for name in args.models.split(","):
                for variant in VARIANTS:
                    row = {"model": name, "variant": variant, "round": round_, **one_variant(name, variant, args, rank)}
                    if rank == 0:
                        print(row, flush=True)
                    rows.append(row)
        if rank == 0:
            out["rows"] = rows
    finally:
        dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--models", default="pix2pix,chromagan,palgan")
    ap.add_argument("--batch-size", type=int, default=4, help="global batch (each of the 2 workers takes half)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--label", default="cpu")
    args = ap.parse_args()
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp, mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(worker, args=(f"file://{tmp}/pg", args, out), nprocs=2, join=True)
        rows = list(out["rows"])
    summary = {}
    for (name, variant), group in itertools.groupby(sorted(rows, key=lambda r: (r["model"], r["variant"])),
                                                    key=lambda r: (r["model"], r["variant"])):  # fmt: skip
        group = list(group)
        summary.setdefault(name, {})[variant] = {
            "seconds_per_step": round(statistics.median(r["seconds_per_step"] for r in group), 3),
            "ddp_stride_warning": any(r["ddp_stride_warning"] for r in group),
        }
    result = {
        "benchmark": "DDP step on 2 gloo workers: plain vs aligned gradients vs synchronised BatchNorm",
        "command": " ".join(["python", "bench/bench_ddp.py", *sys.argv[1:]]),
        "machine": {"cores": os.cpu_count(), "cpu": cpu_name(), "torch": torch.__version__},
        "load_average": {"before": load_before, "after": [round(x, 2) for x in os.getloadavg()]},
        "summary": summary,
        "rows": rows,
    }
    path = Path(__file__).resolve().parent / "results" / f"ddp-{args.label}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
