"""Benchmark ``chromapipe colorize``: seconds per megapixel and peak RSS for each architecture.

Usage: ``python bench/bench_colorize.py [--device cpu|cuda] [--sizes 1 6] [--repeats 2]
[--models pix2pix chromagan palgan]`` → ``bench/results/colorize-<device>.json``. On CUDA the per-file path is the
command's device path: JPEGs decoded by nvJPEG into GPU memory (Pillow where it does not apply, then one upload), L*
for the network, the generator and the full-resolution render on the GPU, the render's time including the copy of
the encoded pixels back to the host; each stage is closed by ``torch.cuda.synchronize()`` so GPU work is charged to
the stage that queued it. Each size records which decoder and which render path ran.

Each model runs in its own subprocess so its peak RSS (``ru_maxrss``, which includes what importing the CUDA
build of torch maps: reports/benchmarks.md, "Inference: `chromapipe colorize` on CPU") is its own. A model uses
its trained generator (``models/<name>/generator.pt``) when there is one, else a generator built from its
ModelConfig with random weights — the timing is the same, and the JSON says which. The per-file path is the
command's own: decode → L* for the network (antialiased resize to the model's resolution) → generator →
strip-wise full-resolution Lab assembly → encode; the inputs are synthetic 3:2 JPEG photos.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import cpu_name  # a sibling script, not a package

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
ROOT = HERE.parent


def synthetic_photo(path: Path, megapixels: float) -> tuple[int, int]:
    """A 3:2 photo-like JPEG (smooth structure + sensor-like noise): decode/encode cost like a real one."""
    import numpy as np
    from PIL import Image

    w = int(round((megapixels * 1e6 * 1.5) ** 0.5))
    h = int(round(w / 1.5))
    rng = np.random.default_rng(0)
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    img = np.empty((h, w, 3), np.uint8)
    for c in range(3):
        plane = (0.5 + 0.4 * np.sin(9 * x + 2 * c) * np.cos(7 * y + c)) * 255 + rng.normal(0, 6, (h, w)).astype(
            np.float32
        )
        img[..., c] = np.clip(plane, 0, 255)
    Image.fromarray(img).save(path, quality=90)
    return w, h


def model_configs(names: list[str] | None) -> dict[str, object]:
    """params.yaml's models when there is one, else every built-in architecture at its own default."""
    from chromapipe.config import ModelConfig, load_params, project_root
    from chromapipe.models.registry import ARCHITECTURES, recipe_class

    configs: dict[str, object] = {}
    if (project_root() / "params.yaml").exists():
        configs.update(load_params().models)
    for arch in ARCHITECTURES:
        if not any(getattr(c, "arch", None) == arch for c in configs.values()):
            try:
                module = sys.modules[recipe_class(arch).__module__]
            except Exception:  # noqa: BLE001 - an architecture not importable yet is reported, not fatal
                configs[arch] = None
                continue
            configs[arch] = ModelConfig(arch=arch, resolution=int(getattr(module, "RESOLUTION", 256)), steps=1)
    return {k: v for k, v in configs.items() if not names or k in names}


def worker(name: str, inputs: list[str], repeats: int, device: str) -> dict:
    """Runs in the subprocess: time the command's per-file path on each input."""
    import torch

    from chromapipe.config import project_root, to_dict
    from chromapipe.inference.runner import uses_device_path
    from chromapipe.layout import Layout
    from chromapipe.models.base import count_parameters
    from chromapipe.models.checkpoint import load_generator
    from chromapipe.models.registry import build_recipe

    cfg = model_configs([name])[name]
    ckpt = Layout(project_root()).generator(name)
    t0 = time.perf_counter()
    if ckpt.exists():
        recipe, G, _ = load_generator(ckpt, device)  # what the command uses
        weights = f"trained: {ckpt}"
    else:
        torch.manual_seed(0)
        recipe = build_recipe(cfg)
        G = recipe.build_generator().eval().to(device)
        weights = f"random (no trained checkpoint at {ckpt}); timing does not depend on the weights"
    load_s = time.perf_counter() - t0
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "arch": cfg.arch,
        "resolution": recipe.resolution,
        "weights": weights,
        "parameters": count_parameters(recipe.inference_modules(G)),
        "config": to_dict(cfg),
        "load_s": round(load_s, 3),
        "sizes": [],
    }
    on_device = uses_device_path(torch.device(device))
    with tempfile.TemporaryDirectory() as tmp:
        for path in inputs:
            runs = []
            for _ in range(repeats):
                stage_by_stage = device_file if on_device else host_file
                stages, img, decoder = stage_by_stage(
                    recipe, G, torch.device(device), Path(path), Path(tmp) / "out.jpg"
                )
                runs.append(stages)
            best = min(runs, key=lambda s: sum(s.values()))
            mp = img.pixels.shape[0] * img.pixels.shape[1] / 1e6
            total = sum(best.values())
            result["sizes"].append(
                {
                    "width": img.pixels.shape[1],
                    "height": img.pixels.shape[0],
                    "megapixels": round(mp, 3),
                    "seconds": round(total, 3),
                    "s_per_mp": round(total / mp, 3),
                    "stages_s": {k: round(v, 3) for k, v in best.items()},
                    "decoder": decoder,
                    "render_path": "device" if on_device else "cpu",
                }
            )
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["rss_after_load_mb"] = round(rss_loaded, 1)
    return result


def host_file(recipe: Any, G: Any, device: Any, path: Path, out_path: Path) -> tuple[dict[str, float], Any, str]:
    """One file through the command's CPU path, stage by stage (on CUDA before the device path existed,
    this was the command's path too, the generator's time then including the copy of ab to the host).
    Returns the stage times, the decoded image and the decoder that ran."""
    import torch

    from chromapipe.inference import fullres
    from chromapipe.inference.io import read_image, write_image

    stages = {}
    t = time.perf_counter()
    img = read_image(path, 10**9)
    stages["decode"] = time.perf_counter() - t
    t = time.perf_counter()
    L = fullres.network_L(img.pixels, recipe.resolution)[None].to(device)
    stages["network_input"] = time.perf_counter() - t
    t = time.perf_counter()
    with torch.inference_mode():
        ab = recipe.predict(G, L)["ab"][0].cpu()
    stages["generator"] = time.perf_counter() - t
    t = time.perf_counter()
    out = fullres.render(img.pixels, ab, img.alpha)
    stages["render"] = time.perf_counter() - t
    t = time.perf_counter()
    write_image(out_path, out, img.format, img.metadata, 95)
    stages["encode"] = time.perf_counter() - t
    return stages, img, img.decoder


def device_file(recipe: Any, G: Any, device: Any, path: Path, out_path: Path) -> tuple[dict[str, float], Any, str]:
    """One file through the command's device path (``runner.Colorizer.prepare``/``flush``), stage by stage:
    ``torch.cuda.synchronize()`` before each clock read, so each stage is charged its own GPU work.
    Returns the stage times, the decoded image and the decoder that ran (``nvjpeg`` or ``pil``)."""
    import torch

    from chromapipe.inference import fullres
    from chromapipe.inference.io import read_image, wants_padding, write_image

    def clock() -> float:
        torch.cuda.synchronize()
        return time.perf_counter()

    stages = {}
    t = clock()
    img = read_image(path, 10**9, device=device)
    decoder = img.decoder
    img = img.to_device(device)
    stages["decode"] = clock() - t
    t = clock()
    L = fullres.network_L(img.pixels, recipe.resolution)[None]
    stages["network_input"] = clock() - t
    t = clock()
    with torch.inference_mode():
        ab = recipe.predict(G, L)["ab"][0]
    stages["generator"] = clock() - t
    t = clock()
    out = fullres.render(img.pixels, ab, img.alpha, pad=wants_padding(img.format, img.pixels, img.alpha))
    stages["render"] = clock() - t
    t = clock()
    write_image(out_path, out, img.format, img.metadata, 95, has_alpha=img.alpha is not None)
    stages["encode"] = clock() - t
    return stages, img, decoder


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=[1.0, 6.0], help="input sizes in megapixels")
    ap.add_argument("--repeats", type=int, default=2, help="runs per size (the fastest is kept)")
    ap.add_argument("--models", nargs="+", help="model names (default: all)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--out", type=Path, help="default: bench/results/colorize-<device>.json")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--inputs", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.inputs, args.repeats, args.device)))
        return 0

    import torch

    configs = model_configs(args.models)
    report: dict = {
        "benchmark": f"chromapipe colorize, {args.device}, one image at a time "
        "(decode -> generator -> full-res Lab -> JPEG q95)"
        + (", per-pixel work on the GPU (nvJPEG decode, network input, render)" if args.device == "cuda" else ""),
        "command": "python bench/bench_colorize.py " + " ".join(sys.argv[1:]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "note": "peak RSS includes ~0.7 GB of the CUDA torch build's libraries mapped at import; "
        "times are the fastest of --repeats runs",
        "models": {},
    }
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    with tempfile.TemporaryDirectory() as tmp:
        inputs = []
        for mp in args.sizes:
            path = Path(tmp) / f"photo-{mp:g}mp.jpg"
            synthetic_photo(path, mp)
            inputs.append(str(path))
        for name, cfg in configs.items():
            if cfg is None:
                report["models"][name] = {"error": "architecture not importable (not implemented yet?)"}
                print(f"{name}: not importable, skipped", file=sys.stderr)
                continue
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                name,
                "--device",
                args.device,
                "--repeats",
                str(args.repeats),
                "--inputs",
                *inputs,
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                report["models"][name] = {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
                print(f"{name}: failed: {report['models'][name]['error']}", file=sys.stderr)
                continue
            res = json.loads(line[len("RESULT ") :])
            report["models"][name] = res
            per = ", ".join(f"{s['megapixels']:g} MP: {s['s_per_mp']} s/MP" for s in res["sizes"])
            print(f"{name}: {per}; peak RSS {res['peak_rss_mb']:.0f} MB ({res['weights'].split(' ')[0]} weights)")
    out = args.out or RESULTS / f"colorize-{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
