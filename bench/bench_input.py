"""Training input end to end: images/s through the real Ray Train loop against the step-only benchmark.

End to end is the train stage's own path (``chromapipe.training.run.train_models``): shards on disk,
``LabShardDataset`` + ``DistributedSampler`` + ``DataLoader`` (``train.loader_workers``), the batch moved
to the device, the GAN step, MLflow logging every ``log_every`` steps, in a Ray Train worker. Its rate is
the median of the loop's own ``train/images_per_s`` windows after the first (which holds the model build
and the first steps). Step-only is ``bench_train.bench_model``: the same ``train_step`` and optimisers
on random tensors already in memory. Same model, batch, steps and threads; step-only runs before and after
the end-to-end runs, in the same process, so drift on a shared machine shows. The ratio end to end ÷
step-only says whether the input keeps up (the issue's goal on a GPU: ≥ 0.95).

    python bench/bench_input.py [--model pix2pix] [--batch-size 4] [--steps 20] [--threads 2]
                                [--loader-workers 0 2] [--root FOLDER] [--label cpu]

Data: the embedded sample photos (256² crops) by default, or an ImageFolder tree (``--root``, e.g. the
ImageNet sample). Writes bench/results/input-<label>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from mlflow.tracking import MlflowClient

from chromapipe.config import load_params
from chromapipe.data.prepare import prepare
from chromapipe.training.run import train_models

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import bench_model  # noqa: E402  (a sibling script, not a package)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def write_params(tmp: Path, args: argparse.Namespace, loader_workers: int) -> Path:
    """A params.yaml for one end-to-end run: the shipped model settings, this benchmark's batch and steps."""
    shipped = yaml.safe_load((REPO / "params.yaml").read_text())
    model = {**shipped["models"][args.model], "steps": args.steps, "batch_size": args.batch_size, "dataset": "bench"}
    dataset = {"size": 256, "splits": {"train": 0.9, "val": 0.05, "test": 0.05}, "out": str(tmp / "data")}
    dataset |= {"source": "folder", "root": str(args.root)} if args.root else {"source": "sample", "crops_per_image": 4}
    params = {
        "datasets": {"bench": dataset},
        "train": {"num_workers": 1, "resources_per_worker": {"CPU": float(args.threads)}, "loader_workers": loader_workers,
                  "log_every": args.log_every, "image_every": 10**6, "checkpoint_every": 10**6, "validate_every": 0,
                  "storage_path": str(tmp / "ray"), "out": str(tmp / "models")},
        "tracking": {"uri": f"sqlite:///{tmp / f'mlflow-w{loader_workers}.db'}"},  # a store each: else the run is restored, not trained
        "models": {args.model: model},
    }
    path = tmp / f"params-w{loader_workers}.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def end_to_end(tmp: Path, args: argparse.Namespace, loader_workers: int) -> dict:
    params = load_params(write_params(tmp, args, loader_workers))
    t0 = time.perf_counter()
    (summary,) = train_models(params, [args.model])
    wall = time.perf_counter() - t0
    history = sorted(MlflowClient(params.tracking.uri).get_metric_history(summary["run_id"], "train/images_per_s"), key=lambda m: m.step)
    windows = [m.value for m in history[1:]]  # the first window holds the model build and the first steps
    return {"loader_workers": loader_workers, "steps": summary["steps"], "windows": [round(v, 3) for v in windows],
            "images_per_s": round(statistics.median(windows), 3), "train_seconds_on_worker": summary["train_seconds"],
            "stage_wall_s": round(wall, 1)}


def step_only(args: argparse.Namespace, cfg) -> dict:  # noqa: ANN001
    torch.set_num_threads(args.threads)
    r = bench_model(cfg, args.batch_size, torch.device("cpu"), args.steps, warmup=2, amp=False, channels_last=False, compile=False)
    return {k: r[k] for k in ("images_per_s", "seconds_per_step", "cpu_seconds_per_step", "steps")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="pix2pix")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--log-every", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--loader-workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--root", type=Path, help="an ImageFolder tree instead of the embedded sample photos")
    ap.add_argument("--label", default="cpu")
    args = ap.parse_args()
    os.environ.pop("RAY_ADDRESS", None)  # a local Ray instance of its own, like the stage without a cluster
    result: dict = {"benchmark": "training input, end to end vs step-only (bench/bench_input.py)", "argv": sys.argv[1:],
                    "machine": {"cores": os.cpu_count(), "cpu": platform.processor() or platform.machine(), "torch": torch.__version__},
                    "load_average_before": [round(x, 2) for x in os.getloadavg()], "device": "cpu"}
    with tempfile.TemporaryDirectory(prefix="bench-input-") as tmp_name:
        tmp = Path(tmp_name)
        params = load_params(write_params(tmp, args, 0))
        manifest = prepare(params.dataset("bench"))
        result["data"] = {"source": str(args.root or "embedded sample photos"), "train_images": manifest["splits"]["train"]["n_images"]}
        cfg = params.model(args.model)
        result["step_only_before"] = step_only(args, cfg)
        print("step-only", result["step_only_before"], flush=True)
        result["end_to_end"] = []
        for workers in args.loader_workers:
            result["end_to_end"].append(end_to_end(tmp, args, workers))
            print("end to end", result["end_to_end"][-1], flush=True)
        result["step_only_after"] = step_only(args, cfg)
        print("step-only", result["step_only_after"], flush=True)
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    reference = statistics.mean([result["step_only_before"]["images_per_s"], result["step_only_after"]["images_per_s"]])
    result["summary"] = {"model": args.model, "batch_size": args.batch_size, "threads": args.threads, "step_only_images_per_s": round(reference, 3),
                         **{f"end_to_end_w{r['loader_workers']}_images_per_s": r["images_per_s"] for r in result["end_to_end"]},
                         **{f"ratio_w{r['loader_workers']}": round(r["images_per_s"] / reference, 3) for r in result["end_to_end"]}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"input-{args.label}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
