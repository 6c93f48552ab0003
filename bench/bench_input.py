"""Training input end to end: images/s through the training loop's input path against the step-only benchmark.

Two engines for "end to end":
- ``ray`` (default) is the train stage's own path (``chromapipe.training.run.train_models``): shards on
  disk, ``training.batches`` (``LabShardDataset`` + ``GlobalBatchSampler`` + ``DataLoader`` with
  ``train.loader_workers``, pinned memory), the batch moved to the device, the training core's loop
  (``trainer.fit``), MLflow logging every ``log_every`` steps, in a Ray Train worker. Its rate is the median
  of the loop's own ``train/images_per_s`` windows after the first (which holds the model build and the
  first steps).
- ``loop`` runs the same input path and step in this process without Ray Train and MLflow (for machines
  that have neither, e.g. a lent GPU machine): ``training.batches.build_loader`` → ``device_batches`` (to the
  device, ``prepare_batch``) → ``trainer.fit``, the same function the Ray worker calls; its rate is the median
  of the same windows. What it leaves out is Ray's per-report cost, paid at log steps only.

- ``loader`` runs the input path alone, no step: ``build_loader`` → ``device_batches`` for ``--steps`` batches
  after two warm-up ones, per ``--input-decode`` mode ("loader": float32 L*a*b* decoded in the loader's
  workers; "device": the stored bytes, decoded on ``--device``). It reports the rate the input can
  deliver, the bytes per image that cross the loader, and the CPU seconds per image of this process and its
  loader workers together: the device-independent cost that sets how many host cores a GPU's rate needs.

Step-only is ``bench_train.bench_model``: the same ``trainer.fit`` on random tensors already on the device.
Same model, batch, steps, device and speed options; step-only runs before and after the
end-to-end runs, in the same process, so drift shows. The ratio end to end ÷ step-only says whether the
input keeps up (the issue's goal on a GPU: ≥ 0.95).

    python bench/bench_input.py [--model pix2pix] [--batch-size 4] [--steps 20] [--threads 2]
                                [--loader-workers 0 2] [--root FOLDER] [--label cpu]
    python bench/bench_input.py --engine loader --batch-size 32 --steps 40 --loader-workers 0 2 \
        --input-decode loader device --encoding rgb8 --root ../shared/data/imagenet-sample --label loader-cpu
    python bench/bench_input.py --engine loop --device cuda --amp --channels-last --cudnn-benchmark \
        --batch-size 32 --steps 60 --log-every 10 --loader-workers 4 8 --encoding float16 --root PHOTOS \
        --repeat 8 --label cuda

Data: the embedded sample photos (256² crops) by default, or an ImageFolder tree (``--root``, e.g. the
ImageNet sample), prepared into shards of ``--encoding``. Writes bench/results/input-<label>.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import torch
import yaml
from torch.utils.data import default_collate

from chromapipe.config import InputDecode, ModelConfig, Params, TrainConfig, load_params
from chromapipe.data.encoding import Encoding
from chromapipe.data.prepare import prepare
from chromapipe.data.shards import LabShardDataset
from chromapipe.models.registry import build_recipe
from chromapipe.training.batches import build_loader, configure_device, device_batches, training_dataset
from chromapipe.training.trainer import Hook, LogEvent, Networks, fit, seed_everything

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_prepare import cpu_seconds, repeated_tree  # noqa: E402
from bench_train import bench_model, device_name, training_pair  # noqa: E402  (sibling scripts, not a package)
from machine import cpu_name  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def write_params(tmp: Path, args: argparse.Namespace, loader_workers: int, input_decode: str = "auto") -> Path:
    """A params.yaml for one end-to-end run: the shipped model settings, this benchmark's batch and steps."""
    shipped = yaml.safe_load((REPO / "params.yaml").read_text())
    model = {**shipped["models"][args.model], "steps": args.steps, "batch_size": args.batch_size, "dataset": "bench"}
    dataset = {"size": 256, "splits": {"train": 0.9, "val": 0.05, "test": 0.05}}
    dataset |= {"source": "folder", "root": str(args.root)} if args.root else {"source": "sample", "crops_per_image": 4}
    dataset["encoding"] = args.encoding
    resources = {"CPU": float(args.threads)} | ({"GPU": 1.0} if args.device == "cuda" else {})
    params = {
        "datasets": {"bench": dataset},
        "train": {
            "num_workers": 1,
            "resources_per_worker": resources,
            "loader_workers": loader_workers,
            "use_gpu": args.device == "cuda",
            "amp": args.amp,
            "channels_last": args.channels_last,
            "cudnn_benchmark": args.cudnn_benchmark,
            "input_decode": input_decode,
            "log_every": args.log_every,
            "image_every": 10**6,
            "checkpoint_every": 10**6,
            "validate_every": 0,
            "storage_path": str(tmp / "ray"),
        },
        "tracking": {
            "uri": f"sqlite:///{tmp / f'mlflow-w{loader_workers}-{input_decode}.db'}"
        },  # a store each: else the run is restored, not trained
        "models": {args.model: model},
    }
    path = tmp / f"params-w{loader_workers}-{input_decode}.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def end_to_end(tmp: Path, args: argparse.Namespace, loader_workers: int, input_decode: str) -> dict:
    params = load_params(write_params(tmp, args, loader_workers, input_decode))
    if args.engine == "loop":
        return {"input_decode": input_decode} | loop_end_to_end(params, args)
    if args.engine == "loader":
        return {"input_decode": input_decode} | loader_only(params, args)
    from mlflow.tracking import MlflowClient

    from chromapipe.training.run import train_models

    t0 = time.perf_counter()
    (summary,) = train_models(params, [args.model])
    wall = time.perf_counter() - t0
    history = sorted(
        MlflowClient(params.tracking.uri).get_metric_history(summary["run_id"], "train/images_per_s"),
        key=lambda m: m.step,
    )
    windows = [m.value for m in history[1:]]  # the first window holds the model build and the first steps
    return {
        "input_decode": input_decode,
        "loader_workers": loader_workers,
        "steps": summary["steps"],
        "windows": [round(v, 3) for v in windows],
        "images_per_s": round(statistics.median(windows), 3),
        "train_seconds_on_worker": summary["train_seconds"],
        "stage_wall_s": round(wall, 1),
    }


def loop_end_to_end(params: Params, args: argparse.Namespace) -> dict:
    """The Ray worker's input path and loop (``training.batches`` → ``training.trainer.fit``) in this process,
    without Ray Train and MLflow; the rate of each ``log_every`` window is the loop's own (``LogEvent``)."""
    cfg, tc, device = params.model(args.model), params.train, torch.device(args.device)
    if args.steps < 2 * tc.log_every:
        raise SystemExit(
            f"--steps {args.steps}: needs at least 2 x --log-every ({tc.log_every}); the first window is not counted"
        )
    t0 = time.perf_counter()
    configure_device(device, tc)
    seed_everything(params.seed)
    dataset = training_dataset(params.dataset_dir("bench"), cfg, tc, device)
    recipe, nets = training_pair(cfg, device, tc.channels_last, steps=args.steps)
    loader = build_loader(dataset, cfg, tc, seed=params.seed, device=device)
    windows = WindowRates()
    fit(
        recipe,
        nets,
        device_batches(loader, dataset, recipe, device, tc.channels_last),
        steps=args.steps,
        n_critic=cfg.n_critic,
        images_per_step=cfg.batch_size,
        amp=tc.amp and device.type == "cuda",
        log_every=tc.log_every,
        hooks=[windows],
    )
    del loader  # stops the loader's worker processes before the next measurement
    gc.collect()
    rates = windows.rates[1:]  # the first window holds the loader's start and cuDNN's autotuning
    return {
        "engine": "loop (no Ray Train, no MLflow)",
        "loader_workers": tc.loader_workers,
        "steps": args.steps,
        "windows": [round(v, 3) for v in rates],
        "images_per_s": round(statistics.median(rates), 3),
        "wall_s": round(time.perf_counter() - t0, 1),
    }


class WindowRates(Hook):
    """The images/s of each log window, as the loop measured it."""

    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_log(self, event: LogEvent, nets: Networks) -> None:
        self.rates.append(event.images_per_s)


def loader_only(params: Params, args: argparse.Namespace) -> dict:
    """The training input alone (``build_loader`` → ``device_batches``, as the loop calls them), no step: the rate
    it delivers, the bytes per image crossing the loader, and CPU seconds per image of this process and its
    loader workers (counted once they are reaped: the loader is dropped and collected before the reading)."""
    cfg, tc, device = params.model(args.model), params.train, torch.device(args.device)
    torch.set_num_threads(args.threads)
    # the main process alone is the serial part of the input, which more loader workers cannot spread
    c0, m0 = (
        cpu_seconds(),
        cpu_seconds(children=False),
    )  # before the workers start: their start-up is the loader's cost too
    wall, crossing, dtype, worker_ms = _drain_input(params, args)
    main = cpu_seconds(children=False) - m0
    gc.collect()  # the persistent workers stop with their DataLoader
    cpu = cpu_seconds() - c0
    images = args.steps * cfg.batch_size
    return {
        "engine": "loader (input path only, no step)",
        "loader_workers": tc.loader_workers,
        "batches": args.steps,
        "images_per_s": round(images / wall, 1),
        "bytes_per_image_through_loader": crossing // cfg.batch_size,
        "cpu_ms_per_image": round(1000 * cpu / ((args.steps + 2) * cfg.batch_size), 3),
        "main_process_cpu_ms_per_image": round(1000 * main / ((args.steps + 2) * cfg.batch_size), 3),
        "loader_worker_ms_per_image": worker_ms,
        "batch_dtype": dtype,
        "device": device.type,
        "wall_s": round(wall, 2),
    }


def worker_cost(dataset: LabShardDataset, batch_size: int, batches: int = 8) -> float:
    """Milliseconds per image of what one loader worker does (``__getitem__`` for a batch, then the default
    collation), timed here on one thread after one warm-up batch: at R img/s the loader needs R × this / 1000
    cores, whatever the machine's other work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a loader worker runs torch single-threaded
    n = min(len(dataset) // batch_size, batches + 1) * batch_size
    default_collate([dataset[i] for i in range(batch_size)])
    t0 = time.perf_counter()
    for start in range(batch_size, n, batch_size):
        default_collate([dataset[i] for i in range(start, start + batch_size)])
    torch.set_num_threads(threads)
    return round(1000 * (time.perf_counter() - t0) / (n - batch_size), 3)


def _drain_input(params: Params, args: argparse.Namespace) -> tuple[float, int, str, float]:
    """Two warm-up batches, then ``--steps`` timed ones. -> (seconds, bytes of one loader batch, the step's
    dtype, :func:`worker_cost`)."""
    cfg, tc, device = params.model(args.model), params.train, torch.device(args.device)
    seed_everything(params.seed)
    dataset = training_dataset(params.dataset_dir("bench"), cfg, tc, device)
    loader = build_loader(dataset, cfg, tc, seed=params.seed, device=device)
    per_image = worker_cost(dataset, cfg.batch_size)
    recipe = build_recipe(cfg)
    recipe.setup(device)
    crossing: list[int] = []

    def counted() -> Iterator[dict[str, torch.Tensor]]:  # what the loader hands over, measured on the way
        for batch in loader:
            crossing.append(sum(v.nbytes for v in batch.values()))
            yield batch

    batches = device_batches(counted(), dataset, recipe, device, tc.channels_last)
    for _ in range(2):
        next(batches)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        out = next(batches)
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    batches.close()
    return wall, crossing[-1], str(out["L"].dtype), per_image


def step_only(args: argparse.Namespace, cfg: ModelConfig, tc: TrainConfig) -> dict:
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    configure_device(device, tc)
    r = bench_model(
        cfg,
        args.batch_size,
        device,
        args.steps,
        warmup=5 if device.type == "cuda" else 2,
        amp=tc.amp and device.type == "cuda",
        channels_last=tc.channels_last,
        compile=False,
    )
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
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="--root's photos K times (symlinks, distinct names): epochs"
        " long enough that the loader's restart at each epoch does not enter the rate",
    )
    ap.add_argument("--label", default="cpu")
    ap.add_argument(
        "--engine",
        choices=("ray", "loop", "loader"),
        default="ray",
        help="end to end through Ray Train + MLflow, the same loop without them, or the input path alone",
    )
    ap.add_argument(
        "--input-decode",
        nargs="+",
        choices=get_args(InputDecode),
        default=["auto"],
        help="train.input_decode values to run",
    )
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast (train.amp)")
    ap.add_argument("--channels-last", action="store_true", help="train.channels_last")
    ap.add_argument("--cudnn-benchmark", action="store_true", help="train.cudnn_benchmark")
    ap.add_argument("--out", type=Path, help="output JSON (default bench/results/input-<label>.json)")
    ap.add_argument(
        "--encoding", choices=get_args(Encoding), default="float16", help="shard encoding of the prepared data"
    )
    args = ap.parse_args()
    os.environ.pop("RAY_ADDRESS", None)  # a local Ray instance of its own, like the stage without a cluster
    result: dict = {
        "benchmark": "training input, end to end vs step-only (bench/bench_input.py)",
        "argv": sys.argv[1:],
        "machine": {"cores": os.cpu_count(), "cpu": cpu_name(), "torch": torch.__version__},
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "device": device_name(torch.device(args.device)),
        "engine": args.engine,
        "options": {k: getattr(args, k) for k in ("amp", "channels_last", "cudnn_benchmark", "encoding")},
    }
    with tempfile.TemporaryDirectory(prefix="bench-input-") as tmp_name:
        tmp = Path(tmp_name)
        source = str(args.root or "embedded sample photos")
        if args.root and args.repeat > 1:
            args.root = repeated_tree(args.root, args.repeat, tmp / "photos")
        params = load_params(write_params(tmp, args, 0))
        manifest = prepare(params.dataset("bench"), params.dataset_dir("bench"))
        result["data"] = {
            "source": source,
            "repeat": args.repeat,
            "train_images": manifest.split("train").n_images,
        }
        cfg = params.model(args.model)
        timed_steps = args.engine != "loader"  # the input alone is compared with the step elsewhere
        if timed_steps:
            result["step_only_before"] = step_only(args, cfg, params.train)
            print("step-only", result["step_only_before"], flush=True)
        result["end_to_end"] = []
        for workers in args.loader_workers:
            for input_decode in args.input_decode:
                result["end_to_end"].append(end_to_end(tmp, args, workers, input_decode))
                print("end to end", result["end_to_end"][-1], flush=True)
        if timed_steps:
            result["step_only_after"] = step_only(args, cfg, params.train)
            print("step-only", result["step_only_after"], flush=True)
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    if not timed_steps:
        result["summary"] = [
            {
                k: r[k]
                for k in (
                    "input_decode",
                    "loader_workers",
                    "images_per_s",
                    "bytes_per_image_through_loader",
                    "cpu_ms_per_image",
                    "main_process_cpu_ms_per_image",
                    "loader_worker_ms_per_image",
                )
            }
            for r in result["end_to_end"]
        ]
        return write_result(result, args)
    reference = statistics.mean([result["step_only_before"]["images_per_s"], result["step_only_after"]["images_per_s"]])
    result["summary"] = {
        "model": args.model,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "step_only_images_per_s": round(reference, 3),
        **{
            f"end_to_end_w{r['loader_workers']}_{r['input_decode']}_images_per_s": r["images_per_s"]
            for r in result["end_to_end"]
        },
        **{
            f"ratio_w{r['loader_workers']}_{r['input_decode']}": round(r["images_per_s"] / reference, 3)
            for r in result["end_to_end"]
        },
    }
    write_result(result, args)


def write_result(result: dict, args: argparse.Namespace) -> None:
    path = args.out or RESULTS / f"input-{args.label}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
