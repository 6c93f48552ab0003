"""Ray Train's fixed cost per run: what a train stage pays around its workers' own time.

Each run is the train stage's own path (``chromapipe.training.run.train_model``) for a few steps of a
shipped model on the embedded sample photos, with two workers as ``params.yaml`` has. Its wall time is
split into the workers' own seconds (``train.json`` ``train_seconds``: building the networks, the steps,
validation, logging the generator) and the rest, the overhead: starting the Ray Train controller, its
helper actors and the worker processes (each imports torch), tearing them down, and the driver's export.

Two ways to reach Ray, alternated round by round in one process so that drift shows in both:
- ``own``: no Ray instance yet, so the run starts a local one and stops it afterwards (a lone
  ``python pipeline/train.py`` or ``dvc repro`` without a cluster);
- ``joined``: the round starts one local instance first (as ``chromapipe ray-local`` does for
  ``make repro``, and as a cluster is already there) and two runs join it in turn: the first also creates
  Ray Train's helper actors, the second finds them.

    python bench/bench_ray_overhead.py [--model pix2pix] [--steps 2] [--rounds 2] [--label cpu]

Writes bench/results/ray-overhead-<label>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import ray
import yaml

from chromapipe.config import load_params
from chromapipe.data.prepare import prepare
from chromapipe.training.run import _connect_ray, train_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_name  # noqa: E402  (a sibling script, not a package)

REPO = Path(__file__).resolve().parents[1]


def write_params(tmp: Path, name: str, args: argparse.Namespace) -> Path:
    """One run's params in its own project directory ``tmp``: the shipped model for ``--steps`` steps; a store
    of its own, else the run would be restored from MLflow instead of trained."""
    shipped = yaml.safe_load((REPO / "params.yaml").read_text())
    params = {
        "datasets": {"sample": {"size": 256, "crops_per_image": 2}},
        "train": {
            "num_workers": 2,
            "resources_per_worker": {"CPU": 1.0},
            "log_every": args.steps,
            "checkpoint_every": 10**6,
            "storage_path": str(tmp / "ray"),
        },
        "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}"},
        "models": {
            args.model: {**shipped["models"][args.model], "dataset": "sample", "steps": args.steps, "batch_size": 4}
        },
    }
    path = tmp / f"params-{name}.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def timed_run(root: Path, name: str, args: argparse.Namespace) -> dict:
    tmp = root / name
    (tmp / "data").mkdir(parents=True)
    (tmp / "data" / "prepared").symlink_to(root / "data" / "prepared")  # prepared once, in ``root``
    params = load_params(write_params(tmp, name, args))
    t0 = time.perf_counter()
    summary = train_model(params, args.model)
    wall = time.perf_counter() - t0
    row = {
        "run": name,
        "wall_s": round(wall, 1),
        "workers_s": summary["train_seconds"],
        "overhead_s": round(wall - summary["train_seconds"], 1),
        "steps": summary["steps"],
    }
    print(row, flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="pix2pix")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--label", default="cpu")
    args = ap.parse_args()
    os.environ.pop("RAY_ADDRESS", None)  # local instances only: this measures Ray's start-up on this machine
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp_name:
        root = Path(tmp_name)
        params = load_params(write_params(root, "prepare", args))
        prepare(params.dataset("sample"), params.dataset_dir("sample"))
        for r in range(args.rounds):
            rows.append({"mode": "own", "round": r, **timed_run(root, f"own-{r}", args)})
            started = _connect_ray(num_cpus_needed=2)
            try:
                for i in range(2):
                    rows.append(
                        {
                            "mode": "joined",
                            "round": r,
                            "nth_in_instance": i + 1,
                            **timed_run(root, f"joined-{r}-{i}", args),
                        }
                    )
            finally:
                if started:
                    ray.shutdown()

    def kind(row: dict) -> str:
        return "own" if row["mode"] == "own" else ("joined_first" if row["nth_in_instance"] == 1 else "joined_later")

    summary = {
        name: {
            key: statistics.median(row[key] for row in rows if kind(row) == name)
            for key in ("wall_s", "workers_s", "overhead_s")
        }
        for name in ("own", "joined_first", "joined_later")
    }
    result = {
        "benchmark": "Ray Train fixed cost per train_model run (bench/bench_ray_overhead.py)",
        "argv": sys.argv[1:],
        "machine": {"cores": os.cpu_count(), "cpu": cpu_name(), "ray": ray.__version__},
        "model": args.model,
        "steps": args.steps,
        "global_batch": 4,
        "workers": 2,
        "rows": rows,
        "median": summary,
    }
    out = REPO / "bench" / "results" / f"ray-overhead-{args.label}.json"
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(summary, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
