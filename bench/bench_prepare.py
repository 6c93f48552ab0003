"""Prepare-stage throughput: decode-only baseline, prepare at 1 and N workers, Ray, and read cost per encoding.

On a folder of photos (default: the 800-photo ImageNet sample, one per class), measures and writes
bench/results/prepare-<label>.json:

- decode-only: torchvision ``decode_jpeg`` of every file (bytes already in memory), one thread: the
  ceiling the issue measures prepare against;
- prepare (``chromapipe.data.prepare.prepare``, size 256 center crop, role train) with 1 worker and with
  N workers (default: every local core), in float16, lab8 and rgb8 (N workers), with each run's
  round-trip error and counts; wall img/s (sources per second, skipped files included, as the stage
  sees them) and CPU ms per source (this process + its worker processes);
- optionally (``--ray``) the ray engine on a local ``ray start`` cluster (token auth) of one node and of
  two, each node offering N/2 CPUs, run as the stage runs: a fresh process with RAY_ADDRESS (on one
  machine the second node adds cores, not a second machine's disk and network: an upper bound on scaling);
- read cost: ``LabShardDataset.__getitem__`` img/s per encoding, one thread;
- a CPU breakdown of the per-image steps (read, header, decode, gray test, resize, encode per
  encoding, write, hash), one thread: where the time goes;
- the machine: cores, CPU model, load average before and after (other jobs on a shared machine change
  the figures: the load average says how much).

    python bench/bench_prepare.py [--root DIR] [--repeat K] [--workers N] [--ray] [--label NAME]

``--repeat K`` builds a temporary folder of symlinks holding the photos K times (distinct names, so
distinct photos to the splitter) for runs long enough to amortise start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from machine import cpu_name  # a sibling script, not a package

from chromapipe.config import DataConfig, SplitConfig, to_dict
from chromapipe.data.engines import local_cores
from chromapipe.data.prepare import prepare
from chromapipe.data.shards import LabShardDataset

DEFAULT_ROOT = Path("/work/shared/data/imagenet-sample")
RESULTS = Path(__file__).resolve().parent / "results"
IMAGENET_TRAIN = 1_281_167  # ILSVRC-2012 training images


def cpu_seconds(children: bool = True) -> float:
    """CPU time of this process (all its threads) and, with ``children``, of its reaped children (pool or
    loader workers), user + system."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN) if children else None
    return own.ru_utime + own.ru_stime + (kids.ru_utime + kids.ru_stime if kids else 0.0)


def _machine() -> dict[str, Any]:
    import numpy
    import PIL
    import torchvision

    return {
        "cores": local_cores(),
        "cpu": cpu_name(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pillow": PIL.__version__,
        "numpy": numpy.__version__,
    }


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def repeated_tree(root: Path, k: int, into: Path) -> Path:
    """``root`` k times as symlinks (``r<i>_<name>`` in each class folder): k× the photos, no copies."""
    for i in range(k):
        for f in _files(root):
            link = into / f.relative_to(root).parent / f"r{i}_{f.name}"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(f.resolve())
    return into


def decode_only(files: list[Path]) -> dict[str, Any]:
    """torchvision decode_jpeg of every file, one thread, bytes read beforehand (what the issue measured)."""
    from torchvision.io import decode_jpeg

    torch.set_num_threads(1)
    blobs = [torch.frombuffer(bytearray(f.read_bytes()), dtype=torch.uint8) for f in files]
    decode_jpeg(blobs[0])
    c0, t0 = cpu_seconds(), time.perf_counter()
    for b in blobs:
        decode_jpeg(b)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    return {
        "images": len(files),
        "seconds": round(wall, 3),
        "images_per_s": round(len(files) / wall, 1),
        "cpu_ms_per_image": round(1000 * cpu / len(files), 3),
    }


def run_prepare(cfg: DataConfig, out: Path) -> dict[str, Any]:
    c0, t0 = cpu_seconds(), time.perf_counter()
    manifest = prepare(cfg, out)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    n = manifest.n_listed
    return {
        "encoding": cfg.encoding,
        "engine": manifest.run.engine,
        "workers": manifest.run.workers,
        "sources": n,
        "images": manifest.image_counts(),
        "skipped_by_reason": manifest.skipped_by_reason,
        "roundtrip_max_abs_uint8": manifest.lab_roundtrip_max_abs_uint8,
        "bytes_per_image": manifest.storage.bytes_per_image,
        "seconds": round(wall, 3),
        "images_per_s": round(n / wall, 1),
        "cpu_ms_per_source": round(1000 * cpu / n, 3),
        "chunks": len(manifest.run.chunk_nodes),
        "nodes": len(manifest.run.nodes),
    }


def read_rate(out: Path, n: int) -> dict[str, Any]:
    """LabShardDataset.__getitem__ over the first n training images (pages already cached), one thread."""
    torch.set_num_threads(1)
    ds = LabShardDataset(out, "train")
    n = min(n, len(ds))
    ds[0]
    c0, t0 = time.process_time(), time.perf_counter()
    for i in range(n):
        ds[i]
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"images": n, "images_per_s": round(n / wall, 1), "cpu_ms_per_image": round(1000 * cpu / n, 3)}


def breakdown(files: list[Path], size: int) -> dict[str, Any]:
    """CPU ms per decoded photo of each step of the per-image work (one thread, role train, center crop),
    the same library calls the stage makes; plus writing and hashing the float16 bytes."""
    import hashlib
    from collections import defaultdict

    from chromapipe.data.decode import decode_rgb, grayscale_spread, read_header
    from chromapipe.data.encoding import encode_rgb
    from chromapipe.data.process import crops

    torch.set_num_threads(1)
    cfg = DataConfig(source="folder", root="-", size=size)
    cost: dict[str, float] = defaultdict(float)
    decoded = 0

    def timed(step: str, fn, *a, **kw):  # noqa: ANN001, ANN202
        c = time.process_time()
        out = fn(*a, **kw)
        cost[step] += time.process_time() - c
        return out

    with tempfile.TemporaryFile() as sink:
        for f in files:
            data = timed("read", f.read_bytes)
            header = timed("header", read_header, data, cfg.max_pixels)
            if min(header.width, header.height) < size or header.single_channel:
                continue  # refused before decoding
            decoded += 1
            rgb = timed("decode", decode_rgb, data, cfg.max_pixels, header=header, min_short=size)
            timed("gray_test", grayscale_spread, rgb)
            views = timed("resize_crop", crops, rgb, cfg)
            for enc in ("float16", "lab8", "rgb8"):
                timed(f"encode_{enc}", encode_rgb, views, enc)
            f16 = encode_rgb(views, "float16")
            timed("write_float16", sink.write, memoryview(f16).cast("B"))
            timed("sha256_float16", hashlib.sha256, memoryview(f16).cast("B"))
    per = {k: round(1000 * v / decoded, 3) for k, v in cost.items()}
    return {"photos": len(files), "decoded": decoded, "cpu_ms_per_decoded_photo": per}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_cluster_run(cfg: DataConfig, out: Path, cpus_per_node: int, nodes: int = 2) -> dict[str, Any]:
    """Start a head and ``nodes - 1`` worker nodes on localhost, run prepare in a fresh process with RAY_ADDRESS."""
    ray_cli = str(Path(sys.executable).with_name("ray"))
    port = _free_port()
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }
    start = [ray_cli, "start", "--disable-usage-stats", f"--num-cpus={cpus_per_node}", "--node-ip-address=127.0.0.1"]
    try:
        subprocess.run(
            [*start, "--head", f"--port={port}", "--include-dashboard=false"],
            check=True,
            env=env,
            capture_output=True,
            timeout=300,
        )
        for _ in range(nodes - 1):
            subprocess.run(
                [*start, f"--address=127.0.0.1:{port}"], check=True, env=env, capture_output=True, timeout=300
            )
        t0 = time.perf_counter()
        child = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps({"cfg": to_dict(cfg), "out": str(out)})],
            env={**env, "RAY_ADDRESS": f"127.0.0.1:{port}"},
            check=True,
            capture_output=True,
            text=True,
            timeout=3600,
        )
        process_seconds = time.perf_counter() - t0
    finally:
        subprocess.run([ray_cli, "stop", "--force"], env=env, capture_output=True, timeout=300)
    result = json.loads(child.stdout.strip().splitlines()[-1])
    return {
        **result,
        "process_seconds": round(process_seconds, 2),
        "cpus_per_node": cpus_per_node,
        "note": "seconds/images_per_s: inside prepare() (Ray connect + task start-up included); "
        "process_seconds: the whole stage process",
    }


def _child(arg: str) -> None:
    """--child: prepare with the given DataConfig into the given directory (engine auto: RAY_ADDRESS is set),
    print the figures."""
    raw = json.loads(arg)
    cfg = {**raw["cfg"], "splits": SplitConfig(**raw["cfg"]["splits"])}
    print(json.dumps(run_prepare(DataConfig(**cfg), Path(raw["out"]))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument(
        "--workers", type=int, default=local_cores(), help="N for the parallel runs (default: every local core)"
    )
    ap.add_argument("--encodings", default="float16,lab8,rgb8")
    ap.add_argument(
        "--ray",
        action="store_true",
        help="also run the ray engine on a local `ray start` cluster of one node and of two",
    )
    ap.add_argument("--read-images", type=int, default=256)
    ap.add_argument("--breakdown", type=int, default=300, help="photos for the per-step CPU breakdown")
    ap.add_argument("--label", default=f"{local_cores()}cpu")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child)
        return
    load_before = os.getloadavg()
    result: dict[str, Any] = {
        "benchmark": "prepare stage (bench/bench_prepare.py)",
        "machine": _machine(),
        "argv": sys.argv[1:],
        "load_average_before": [round(x, 2) for x in load_before],
    }
    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as tmp:
        root = repeated_tree(args.root, args.repeat, Path(tmp) / "src") if args.repeat > 1 else args.root
        files = _files(root)
        result["dataset"] = {"root": str(args.root), "repeat": args.repeat, "files": len(files)}
        result["decode_only"] = decode_only(files)
        print("decode-only", result["decode_only"], flush=True)
        result["breakdown"] = breakdown(files[: args.breakdown], args.size)
        print("breakdown", result["breakdown"], flush=True)
        base = dict(source="folder", root=str(root), size=args.size, splits=SplitConfig(0.8, 0.1, 0.1), engine="local")
        runs = [("float16", 1), *((enc, args.workers) for enc in args.encodings.split(","))]
        result["prepare"], result["read"] = [], {}
        for enc, workers in runs:
            out = Path(tmp) / f"out-{enc}-{workers}"
            r = run_prepare(DataConfig(**base, encoding=enc, workers=workers), out)
            result["prepare"].append(r)
            print("prepare", r, flush=True)
            if workers == args.workers and enc not in result["read"]:
                result["read"][enc] = read_rate(out, args.read_images)
                print("read", enc, result["read"][enc], flush=True)
            shutil.rmtree(out)
        if args.ray:
            per_node = max(1, args.workers // 2)
            ray_cfg, ray_out = DataConfig(**{**base, "engine": "auto"}, encoding="float16"), Path(tmp) / "out-ray"
            result["ray_1node"] = ray_cluster_run(ray_cfg, ray_out, per_node, nodes=1)
            print("ray, one node", result["ray_1node"], flush=True)
            shutil.rmtree(ray_out, ignore_errors=True)
            result["ray"] = ray_cluster_run(ray_cfg, ray_out, per_node, nodes=2)
            print("ray, two nodes", result["ray"], flush=True)
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    result["summary"] = summarize(result, args.workers)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"prepare-{args.label}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))
    print(f"wrote {path}")


def summarize(result: dict[str, Any], workers: int) -> dict[str, Any]:
    """The figures the issue asks about: prepare with N workers vs 0.7 x decode-only x N, ImageNet cost.

    Wall rates depend on what else the machine runs; CPU ms per source do much less. ``capacity`` is
    what the CPU cost allows with the run's cores free: workers x 1000 / (CPU ms per source), the
    parallel overhead (pickling, the writer process) included.
    """
    decode = result["decode_only"]["images_per_s"]
    decode_cpu = result["decode_only"]["cpu_ms_per_image"]
    by = {(r["encoding"], r["workers"]): r for r in result["prepare"]}
    one = by[("float16", 1)]
    out: dict[str, Any] = {
        "decode_only_images_per_s": decode,
        "decode_only_cpu_ms_per_image": decode_cpu,
        "workers": workers,
        "goal_images_per_s": round(0.7 * decode * workers, 1),
        "goal_capacity_images_per_s": round(0.7 * 1000 / decode_cpu * workers, 1),
    }
    for (enc, w), r in by.items():
        key = f"prepare_{enc}_w{w}"
        out[f"{key}_images_per_s"] = r["images_per_s"]
        out[f"{key}_vs_decode_x_workers"] = round(r["images_per_s"] / (decode * w), 3)
        out[f"{key}_cpu_ms_per_source"] = r["cpu_ms_per_source"]
        out[f"{key}_capacity_images_per_s"] = round(1000 * w / r["cpu_ms_per_source"], 1)
        out[f"{key}_capacity_vs_decode_x_workers"] = round(decode_cpu / r["cpu_ms_per_source"], 3)
    out["imagenet_train_hours_per_core_float16"] = round(IMAGENET_TRAIN * one["cpu_ms_per_source"] / 1000 / 3600, 2)
    for (enc, w), r in by.items():
        if w == workers:
            out[f"imagenet_train_hours_per_core_{enc}_w{w}"] = round(
                IMAGENET_TRAIN * r["cpu_ms_per_source"] / 1000 / 3600, 2
            )
    size = result["prepare"][0]["bytes_per_image"]
    out["imagenet_train_disk_gb"] = {
        enc: round(IMAGENET_TRAIN * (r["bytes_per_image"] + 8) / 1e9, 1) for (enc, _), r in by.items()
    }
    out["imagenet_train_disk_gb"]["note"] = (
        f"{IMAGENET_TRAIN} images at the benchmark's size ({size} B/image in float16), + 8 B/label"
    )
    if "ray_1node" in result:  # the same per-node CPUs: what a second node adds
        out["ray_images_per_s"] = {
            "1_node": result["ray_1node"]["images_per_s"],
            "2_nodes": result["ray"]["images_per_s"],
        }
        out["ray_2_nodes_vs_1"] = round(result["ray"]["images_per_s"] / result["ray_1node"]["images_per_s"], 3)
    out["read_images_per_s"] = {enc: r["images_per_s"] for enc, r in result["read"].items()}
    out["read_cpu_ms_per_image"] = {enc: r["cpu_ms_per_image"] for enc, r in result["read"].items()}
    return out


if __name__ == "__main__":
    main()
