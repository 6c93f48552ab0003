"""Can a model fit a handful of real photos? Train it on N photos, then score it on those same photos.

Why: a GAN colorizer with a wrong detach, a saturated discriminator or a branch that never trains looks
like every other model after the sample run's 12 steps: worse than the gray image. Memorising a few
photos is the weakest thing a working implementation must manage, so "beats the gray baseline (ab = 0)
on the photos it trained on" separates broken implementations from untrained ones.

Everything runs through the project's own code, with the model's own settings from a params file:
- photos: ``chromapipe.data.decode.decode_rgb`` → ``chromapipe.data.process.crops`` (the prepare stage's
  ``resize: center_crop`` view at the model's resolution) → ``chromapipe.color.rgb_uint8_to_lab``; chosen
  deterministically (seeded hash of the path), skipping grayscale photos and photos smaller than the
  resolution, as the prepare stage does;
- training: ``registry.build_recipe`` → the training core (``training.trainer.build_networks``: networks,
  optimisers, schedules; ``trainer.fit``: the ``n_critic`` cadence, the loop the Ray worker runs) on
  ``recipe.prepare_batch``-ed batches drawn without replacement per pass, without the pipeline's random
  horizontal flip (memorising is the point);
- scoring: ``recipe.predict`` in eval mode (what the evaluate stage does) → L joined back →
  ``lab_to_rgb_uint8`` → ``metrics.suite.MetricSuite`` (PSNR, SSIM, LPIPS, colorfulness; no FID), all
  through ``metrics.scoring.score_batches``, the evaluate stage's loop; the gray baseline is its
  ``gray_predictor``, scored the same way.

Only the batch size, the number of photos and the number of steps are chosen here; losses, learning
rates, betas and schedules are the model's unless ``--set key=value`` overrides one (recorded in the
results). The cosine schedule is stretched over this run's steps.

    python bench/fit_photos.py [--params params.yaml] [--models pix2pix,palgan | all] [--photos 8]
                               [--steps 200] [--seconds 600] [--batch-size 4] [--seed 0] [--set n_critic=1]
                               [--out bench/results/fit-photos-cpu.json]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import hashlib
import json
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from chromapipe.color import join_lab, lab_to_rgb_uint8, rgb_uint8_to_lab
from chromapipe.config import DataConfig, ModelConfig, TrainConfig, load_params
from chromapipe.data.decode import SkipImage, decode_rgb, grayscale_spread
from chromapipe.data.process import crops
from chromapipe.metrics.scoring import Predictor, gray_predictor, score_batches
from chromapipe.metrics.suite import MetricSuite
from chromapipe.models.base import Recipe
from chromapipe.models.registry import build_recipe
from chromapipe.training.trainer import Hook, LogEvent, Networks, StopTraining, build_networks, fit, seed_everything

REPO = Path(__file__).resolve().parents[1]
PHOTO_ROOT = REPO.parent / "shared" / "data" / "imagenet-sample"
PHOTO_SEED = "fit-photos-v1"
METRICS = ("psnr", "ssim", "lpips", "cf", "cf_gt")


# -- photos ------------------------------------------------------------------------------------------------------
def photo_order(root: Path, seed: str = PHOTO_SEED) -> list[Path]:
    """Every file under ``root`` ordered by a seeded hash of its relative path: a fixed, class-mixed order."""
    files = [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")]
    return sorted(files, key=lambda p: hashlib.sha256(f"{seed}\0{p.relative_to(root).as_posix()}".encode()).hexdigest())


def load_photo(path: Path, size: int) -> torch.Tensor | None:
    """(3, size, size) L*a*b* of the photo's central square (a train dataset's default view), or None for a
    photo the prepare stage would skip (unreadable, smaller than ``size``, grayscale)."""
    view = DataConfig(size=size, resize="center_crop")
    try:
        rgb = decode_rgb(path.read_bytes(), view.max_pixels)
    except SkipImage:
        return None
    if min(rgb.shape[-2:]) < size or grayscale_spread(rgb) <= view.grayscale_tolerance:
        return None
    return rgb_uint8_to_lab(crops(rgb, view)[0])


@dataclass
class Photos:
    """N photos at one resolution: ``lab`` (N, 3, S, S) in Lab units and where they came from."""

    lab: torch.Tensor
    names: list[str]

    @property
    def L(self) -> torch.Tensor:
        return self.lab[:, :1]

    @property
    def ab(self) -> torch.Tensor:
        return self.lab[:, 1:]


def load_photos(n: int, size: int, root: Path = PHOTO_ROOT, seed: str = PHOTO_SEED) -> Photos:
    """The first ``n`` usable photos in the seeded order (the same photos for every model and run)."""
    labs, names = [], []
    for path in photo_order(root, seed):
        lab = load_photo(path, size)
        if lab is not None:
            labs.append(lab)
            names.append(path.relative_to(root).as_posix())
        if len(labs) == n:
            return Photos(torch.stack(labs), names)
    raise RuntimeError(f"only {len(labs)} usable photos of at least {size}px under {root}, {n} requested")


# -- training ----------------------------------------------------------------------------------------------------
def batches(n: int, batch_size: int, gen: torch.Generator):
    """Index batches over ``n`` photos: a fresh permutation per pass, drop_last (as the loop's loader)."""
    while True:
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n - batch_size + 1, batch_size):
            yield perm[i : i + batch_size]


@dataclass
class Trained:
    recipe: Recipe
    G: nn.Module
    D: nn.Module
    steps: int
    images_seen: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def train(
    cfg: ModelConfig,
    photos: Photos,
    *,
    steps: int,
    seconds: float | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    log_every: int = 0,
) -> Trained:
    """Train ``cfg``'s model on ``photos`` for ``steps`` iterations (fewer if ``seconds`` runs out first),
    through the training core's loop (``trainer.fit``: a D step, a G step every ``n_critic``-th), reading the
    losses after every step."""
    dev = torch.device(device)
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    bs = batch_size or cfg.batch_size
    if bs > len(photos.names):
        raise ValueError(f"batch size {bs} exceeds the {len(photos.names)} photos")
    cfg = dataclasses.replace(cfg, batch_size=bs)
    recipe, nets = training_pair(cfg, dev, steps)
    lab = photos.lab.to(dev)
    labels = torch.full((len(photos.names),), -1, dtype=torch.long, device=dev)
    inputs = (
        recipe.prepare_batch({"L": lab[idx, :1], "ab": lab[idx, 1:], "label": labels[idx]})
        for idx in (i.to(dev) for i in batches(len(photos.names), bs, gen))
    )
    history = History(steps, log_every, seconds)
    result = fit(
        recipe, nets, inputs, steps=steps, n_critic=cfg.n_critic, images_per_step=bs, log_every=1, hooks=[history]
    )
    return Trained(
        recipe, nets.G, nets.D, result.step, result.step * bs, time.perf_counter() - history.t0, history.rows
    )


def training_pair(cfg: ModelConfig, device: torch.device, steps: int) -> tuple[Recipe, Networks]:
    """The recipe and its networks as the training core builds them (one process, no speed options)."""
    recipe = build_recipe(cfg)
    recipe.setup(device)
    return recipe, build_networks(recipe, cfg, TrainConfig(), steps, device)


class History(Hook):
    """Every step's losses; a progress line every ``print_every`` steps; stops training after ``seconds``."""

    def __init__(self, steps: int, print_every: int, seconds: float | None) -> None:
        self.steps, self.print_every, self.seconds = steps, print_every, seconds
        self.rows: list[dict[str, float]] = []
        self.t0 = time.perf_counter()

    def on_log(self, event: LogEvent, nets: Networks) -> None:
        self.rows.append(dict(event.values))
        if self.print_every and event.step % self.print_every == 0:
            elapsed = time.perf_counter() - self.t0
            recent = mean_logs(self.rows[-self.print_every :])
            print(f"  step {event.step}/{self.steps} {elapsed:.0f}s {recent}", file=sys.stderr, flush=True)

    def after_step(self, step: int, nets: Networks) -> None:
        if self.seconds is not None and time.perf_counter() - self.t0 >= self.seconds:
            raise StopTraining


# -- scoring -----------------------------------------------------------------------------------------------------
def to_rgb(L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    return lab_to_rgb_uint8(join_lab(L.float(), ab.float()))


def score_with(predictor: Predictor, photos: Photos, device: str = "cpu") -> dict[str, float]:
    """PSNR / SSIM / LPIPS / colorfulness of one predictor on all the photos (one batch), through the
    evaluate stage's loop (``metrics.scoring.score_batches``)."""
    with MetricSuite(fid=False) as suite:
        score_batches(predictor, [{"L": photos.L, "ab": photos.ab}], suite, torch.device(device))
        metrics = suite.compute().metrics
    return {k: float(metrics[k]) for k in METRICS if metrics.get(k) is not None}


def score(
    trained: Trained, photos: Photos, device: str = "cpu", diagnostics: bool = True
) -> dict[str, dict[str, float]]:
    """Scores of the model (eval mode, as evaluated and deployed) and of the gray baseline on ``photos``.

    ``diagnostics`` adds ``model_train_mode`` (BN batch statistics, dropout on: the thesis' own validation
    mode; a large gap to ``model`` points at normalisation) and, for PalGAN, ``model_gt_palette`` (G
    conditioned on each photo's ground-truth palette: separates a palette generator E that has not learnt
    from an assignment generator G that has not).
    """
    recipe, G = trained.recipe, trained.G
    G.eval()
    out = {
        "model": score_with(functools.partial(recipe.predict, G), photos, device),
        "gray": score_with(gray_predictor, photos, device),
    }
    if diagnostics:
        G_train = copy.deepcopy(G).train()  # a copy: train-mode forwards update BN running statistics
        out["model_train_mode"] = score_with(functools.partial(recipe.predict, G_train), photos, device)
        if recipe.has_palette:
            palette = recipe.palette_target(photos.ab.to(device))
            out["model_gt_palette"] = score_with(lambda L: recipe.predict(G, L, palette=palette), photos, device)
    return out


def save_grid(path: Path, trained: Trained, photos: Photos, device: str = "cpu") -> None:
    """One PNG per model: a row per photo of gray input | eval-mode prediction | ground truth (to look at)."""
    from torchvision.io import write_png

    L, ab = photos.L.to(device), photos.ab.to(device)
    trained.G.eval()
    with torch.no_grad():
        pred = trained.recipe.predict(trained.G, L)["ab"]
    rows = [
        torch.cat(
            [
                to_rgb(L[i : i + 1], torch.zeros_like(ab[i : i + 1])),
                to_rgb(L[i : i + 1], pred[i : i + 1]),
                to_rgb(L[i : i + 1], ab[i : i + 1]),
            ],
            dim=-1,
        )
        for i in range(len(L))
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(torch.cat(rows, dim=-2)[0].cpu(), str(path))


# -- one model, end to end ---------------------------------------------------------------------------------------
def mean_logs(history: list[dict[str, float]]) -> dict[str, float]:
    keys = sorted({k for h in history for k in h})
    return {k: round(sum(h[k] for h in history if k in h) / max(1, sum(k in h for h in history)), 5) for k in keys}


def trajectory(history: list[dict[str, float]], points: int = 20) -> list[dict[str, float]]:
    """The loss logs averaged over ``points`` equal windows (a compact curve for the JSON)."""
    n = len(history)
    if n == 0:
        return []
    edges = [round(i * n / min(points, n)) for i in range(min(points, n) + 1)]
    return [{"steps": f"{a + 1}-{b}", **mean_logs(history[a:b])} for a, b in zip(edges, edges[1:])]


def fit_and_score(
    cfg: ModelConfig,
    *,
    n_photos: int = 8,
    steps: int = 200,
    seconds: float | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    diagnostics: bool = True,
    photos: Photos | None = None,
    log_every: int = 0,
    image: Path | None = None,
) -> dict[str, Any]:
    """Train on ``n_photos`` real photos and score on them: the record written to the results JSON."""
    photos = photos if photos is not None else load_photos(n_photos, cfg.resolution)
    trained = train(
        cfg, photos, steps=steps, seconds=seconds, batch_size=batch_size, seed=seed, device=device, log_every=log_every
    )
    scores = score(trained, photos, device, diagnostics)
    if image is not None:
        save_grid(image, trained, photos, device)
    window = max(1, min(10, len(trained.history) // 5))
    return {
        "arch": cfg.arch,
        "resolution": cfg.resolution,
        "photos": photos.names,
        "n_photos": len(photos.names),
        "batch_size": batch_size or cfg.batch_size,
        "steps": trained.steps,
        "steps_planned": steps,
        "images_seen": trained.images_seen,
        "wall_s": round(trained.seconds, 1),
        "seed": seed,
        "settings": {
            "lr_g": cfg.lr_g,
            "lr_d": cfg.lr_d,
            "betas": list(cfg.betas),
            "schedule": cfg.schedule,
            "n_critic": cfg.n_critic,
            "loss": dict(trained.recipe.loss),
            "options": dict(cfg.options),
        },
        "scores": scores,
        "beats_gray": {
            "psnr": scores["model"]["psnr"] > scores["gray"]["psnr"],
            "lpips": scores["model"].get("lpips", 1.0) < scores["gray"].get("lpips", 0.0),
        },
        "loss_first": mean_logs(trained.history[:window]),
        "loss_last": mean_logs(trained.history[-window:]),
        "loss_trajectory": trajectory(trained.history),
    }


def summary_line(name: str, r: dict[str, Any]) -> str:
    m, g = r["scores"]["model"], r["scores"]["gray"]
    return (
        f"{name:20s} steps {r['steps']:4d} imgs {r['images_seen']:5d} {r['wall_s']:7.1f}s  "
        f"PSNR {m['psnr']:6.2f} vs gray {g['psnr']:6.2f}  "
        f"LPIPS {m.get('lpips', float('nan')):.4f} vs {g.get('lpips', float('nan')):.4f}  "
        f"SSIM {m['ssim']:.4f} vs {g['ssim']:.4f}"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=str(REPO / "params.yaml"))
    ap.add_argument("--models", default="pix2pix", help="comma-separated model names, or 'all'")
    ap.add_argument("--photos", type=int, default=8)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument(
        "--steps-for",
        default="",
        help="per-model step counts overriding --steps, e.g. chromagan=60,pix2pix_wgan_class=600",
    )
    ap.add_argument("--seconds", type=float, help="stop a model's training early after this many seconds")
    ap.add_argument("--batch-size", type=int, help="default: the model's batch_size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-diagnostics", action="store_true")
    ap.add_argument("--images", type=Path, help="write <dir>/<model>.png: gray | prediction | truth per photo")
    ap.add_argument("--log-every", type=int, default=0, help="print mean losses every N steps (stderr)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a model setting for this run (YAML value), e.g. n_critic=1 or lr_g=2e-4; repeatable",
    )
    ap.add_argument("--out", default=str(REPO / "bench/results/fit-photos-cpu.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    params = load_params(args.params)
    names = list(params.models) if args.models == "all" else args.models.split(",")
    steps_for = {k: int(v) for k, v in (item.split("=") for item in args.steps_for.split(",") if item)}
    out_path = Path(args.out)
    command = "python bench/fit_photos.py " + " ".join(sys.argv[1:] if argv is None else argv)
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    for name in names:
        record = fit_and_score(
            dataclasses.replace(params.model(name), **overrides),
            n_photos=args.photos,
            steps=steps_for.get(name, args.steps),
            seconds=args.seconds,
            batch_size=args.batch_size,
            seed=args.seed,
            device=args.device,
            diagnostics=not args.no_diagnostics,
            log_every=args.log_every,
            image=args.images / f"{name}.png" if args.images else None,
        )
        record.update(overrides=overrides, command=command, threads=args.threads, device=args.device)
        print(summary_line(name, record), flush=True)
        write_record(out_path, name, record, params_file=Path(args.params).name)


def write_record(path: Path, name: str, record: dict[str, Any], params_file: str) -> None:
    """Add one model's record to the results file, re-read just before writing: runs of different models
    may go on in parallel and share the file (each model's record carries its own command)."""
    models = json.loads(path.read_text()).get("models", {}) if path.exists() else {}
    doc = {
        "what": "train on N real photos (imagenet-sample), score on the same photos: model vs gray baseline (ab = 0)",
        "machine": platform.machine(),
        "torch": torch.__version__,
        "params_file": params_file,
        "models": {**models, name: record},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(path)


if __name__ == "__main__":
    main()
