"""How much do the protocol details the papers' numbers rest on move a number? Measured on CPU, on real photos.

Each section isolates one detail of issue #24 and reports the size of its effect, so the report of what still
differs from a paper can say "expected effect: X" with a measurement behind it:

- ``generator_mode``: the thesis scored its generator in train mode. A pix2pix ① generator trained briefly on
  N photos (bench/fit_photos.py's loop, the model's own settings) is scored on M other photos under the
  Lab-packed protocol in eval mode and in train mode (batches of 8, seeded dropout; the evaluate stage's code).
- ``teacher_input``: ChromaGAN's KL target from the gray picture the paper describes vs the picture the
  authors' code fed VGG16 (ImageNet mean colour + L/100): how much the teacher's class distribution varies
  from photo to photo under each (mean KL to the set's mean distribution; EfficientNet-Lite0, the teacher this
  machine has).
- ``lab8_ground_truth``: ChromaGAN's evaluation set stored as float16 L*a*b* vs OpenCV-style 8-bit L*a*b* (the
  authors' ground truth is the 8-bit round trip): the gray baseline's PSNR at 224² against each.
- ``resize_antialias``: the authors resized with OpenCV's bilinear (no antialiasing), we antialias: the gray
  baseline's PSNR at 224² on ground truths made either way (torch's non-antialiased bilinear stands in for
  OpenCV's INTER_LINEAR).
- ``eval_view``: PalGAN's evaluation view (ours): the gray baseline's PSNR on a 256² centre crop vs the whole
  photo squashed to 256².
- ``test_set_sampling``: one standard error of a test set's mean at the thesis' and ChromaGAN's test-set sizes
  (what a different draw of the same size moves a number by).
- ``gray_rule``: how many of the photos each gray rule skips.

    python bench/bench_protocols.py [--photos 8] [--holdout 16] [--steps 60] [--out bench/results/protocols-cpu.json]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from chromapipe.color import join_lab, lab_to_rgb_uint8, rgb_uint8_to_lab  # noqa: E402
from chromapipe.config import DataConfig, ModelConfig, load_params  # noqa: E402
from chromapipe.data.decode import SkipImage, decode_rgb, equal_channel_sums, grayscale_spread, read_header  # noqa: E402
from chromapipe.data.encoding import decode_to_lab, encode_rgb  # noqa: E402
from chromapipe.data.process import crops  # noqa: E402
from chromapipe.evaluation.train_mode import generator_in_train_mode  # noqa: E402
from chromapipe.metrics.lab_packed import LabPackedSuite  # noqa: E402
from chromapipe.metrics.pixel import psnr_per_image  # noqa: E402
from chromapipe.models.registry import build_recipe  # noqa: E402


def _fit_photos():
    spec = importlib.util.spec_from_file_location("chromapipe_bench_fit_photos", REPO / "bench" / "fit_photos.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def generator_mode(photos: int, holdout: int, steps: int, batch: int) -> dict:
    """Lab-packed PSNR/SSIM of one briefly trained pix2pix ① in eval and in train mode, on held-out photos."""
    fit = _fit_photos()
    cfg = load_params(REPO / "params-paper.yaml").model("pix2pix")
    every = fit.load_photos(photos + holdout, cfg.resolution)
    train_set = fit.Photos(every.lab[:photos], every.names[:photos])
    test = fit.Photos(every.lab[photos:], every.names[photos:])
    t0 = time.perf_counter()
    trained = fit.train(cfg, train_set, steps=steps, batch_size=batch)
    out = {
        "model": "pix2pix (thesis ①, params-paper)",
        "train_photos": photos,
        "test_photos": holdout,
        "steps": trained.steps,
        "batch_size": batch,
        "train_seconds": round(time.perf_counter() - t0, 1),
    }
    G, recipe = trained.G.eval(), trained.recipe

    def lab_packed(mode: str, seed: int = 0) -> dict[str, float]:
        with LabPackedSuite(fid=False) as suite, torch.no_grad():
            ctx = generator_in_train_mode(G, seed=seed) if mode == "train" else contextlib.nullcontext()
            with ctx:
                for i in range(0, len(test.names), 8):
                    L, ab = test.L[i : i + 8], test.ab[i : i + 8]
                    suite.update(L, recipe.predict(G, L)["ab"], ab)
            return {k: round(v, 4) for k, v in suite.compute().metrics.items() if v is not None}

    out["eval"], out["train"] = lab_packed("eval"), lab_packed("train")
    with LabPackedSuite(fid=False) as suite:
        suite.update(test.L, torch.zeros_like(test.ab), test.ab)
        out["gray"] = {k: round(v, 4) for k, v in suite.compute().metrics.items() if v is not None}
    out["train_minus_eval"] = {k: round(out["train"][k] - out["eval"][k], 4) for k in out["eval"]}
    seeds = [lab_packed("train", seed)["lab_psnr"] for seed in range(1, 5)] + [out["train"]["lab_psnr"]]
    out["train_lab_psnr_over_5_dropout_seeds"] = {
        "min": min(seeds),
        "max": max(seeds),
        "std": round(float(torch.tensor(seeds).std()), 4),
    }
    return out


def _photos(n: int, size: int, resize: str = "resize", antialias: bool = True) -> list[torch.Tensor]:
    """The first ``n`` color photos (fit_photos' seeded order) as (3, size, size) uint8 views."""
    fit = _fit_photos()
    views = []
    for path in fit.photo_order(fit.PHOTO_ROOT):
        try:
            rgb = decode_rgb(path.read_bytes(), 10**9)
        except SkipImage:
            continue
        if grayscale_spread(rgb) <= 2.0:
            continue
        if antialias:
            views.append(crops(rgb, DataConfig(size=size, resize=resize))[0])
        else:
            x = F.interpolate(rgb[None].float(), size=(size, size), mode="bilinear", align_corners=False)
            views.append(x.round().clamp(0, 255).to(torch.uint8)[0])
        if len(views) == n:
            return views
    raise RuntimeError("not enough photos")


def _gray_psnr(rgb: torch.Tensor) -> float:
    """The gray baseline's mean PSNR against ``rgb`` (N, 3, S, S) uint8."""
    lab = rgb_uint8_to_lab(rgb)
    gray = lab_to_rgb_uint8(join_lab(lab[:, :1], torch.zeros_like(lab[:, 1:])))
    return float(psnr_per_image(gray, rgb).mean())


def lab8_ground_truth(n: int) -> dict:
    rgb = torch.stack(_photos(n, 224))
    truth = {}
    for encoding in ("float16", "lab8"):
        lab = decode_to_lab(encode_rgb(rgb, encoding), encoding)
        truth[encoding] = lab_to_rgb_uint8(lab)
    return {
        "photos": n,
        "gray_psnr_vs": {k: round(_gray_psnr(v), 3) for k, v in truth.items()},
        "max_abs_uint8_lab8_vs_float16": int((truth["lab8"].int() - truth["float16"].int()).abs().max()),
    }


def resize_antialias(n: int) -> dict:
    with_aa, without = torch.stack(_photos(n, 224)), torch.stack(_photos(n, 224, antialias=False))
    return {
        "photos": n,
        "gray_psnr": {
            "antialiased (ours)": round(_gray_psnr(with_aa), 3),
            "bilinear without antialiasing (as OpenCV's INTER_LINEAR)": round(_gray_psnr(without), 3),
        },
    }


def teacher_input(n: int) -> dict:
    """Spread of the teacher's class distributions over ``n`` photos, per teacher picture."""
    out = {"photos": n, "teacher": "efficientnet_lite0"}
    rgb = torch.stack(_photos(n, 224))
    L = rgb_uint8_to_lab(rgb)[:, :1]
    for picture in ("gray_srgb", "authors_code"):
        recipe = build_recipe(ModelConfig(arch="chromagan", resolution=224, steps=1, options={
            "backbone_weights": "random", "teacher": "efficientnet_lite0", "teacher_input": picture}))  # fmt: skip
        probs = recipe.prepare_batch({"L": L, "ab": torch.zeros(n, 2, 224, 224)})["teacher_probs"]
        mean = probs.mean(0, keepdim=True)
        kl = (probs * (probs.clamp_min(1e-12).log() - mean.clamp_min(1e-12).log())).sum(-1)
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1)
        out[picture] = {
            "mean_kl_to_mean_distribution": round(float(kl.mean()), 4),
            "mean_entropy_nats": round(float(entropy.mean()), 3),
            "distinct_top1_classes": int(probs.argmax(-1).unique().numel()),
        }
    return out


def eval_view(n: int) -> dict:
    """PalGAN's evaluation view is ours (the poster does not say): the gray baseline's PSNR at 256² on a centre
    crop vs the whole photo squashed."""
    return {
        "photos": n,
        "gray_psnr": {
            view: round(_gray_psnr(torch.stack(_photos(n, 256, resize=view))), 3) for view in ("center_crop", "resize")
        },
    }


def test_set_sampling(n: int) -> dict:
    """How much the choice of a test set of a paper's size moves a number, from the per-image spread of the gray
    baseline on ``n`` photos: one standard error of the set's mean at the thesis' 23,797 (Lab-packed PSNR, one
    PSNR from the set's MSE) and at ChromaGAN's 1,000 test images (sRGB PSNR, mean of per-image PSNR)."""
    from chromapipe.metrics.lab_packed import pack_lab

    rgb = torch.stack(_photos(n, 256))
    lab = rgb_uint8_to_lab(rgb)
    gray = torch.zeros_like(lab[:, 1:])
    mse = ((pack_lab(lab[:, :1], gray) - pack_lab(lab[:, :1], lab[:, 1:])) ** 2).flatten(1).mean(1).double()
    se = float(mse.std()) / 23797**0.5
    db = lambda x: 10 * math.log10(1 / x)  # noqa: E731
    psnr = psnr_per_image(lab_to_rgb_uint8(join_lab(lab[:, :1], gray)), rgb).double()
    return {
        "photos": n,
        "thesis_lab_psnr_se_db_at_23797": round(db(float(mse.mean()) - se) - db(float(mse.mean())), 4),
        "chromagan_psnr_se_db_at_1000": round(float(psnr.std()) / 1000**0.5, 4),
    }


def gray_rule() -> dict:
    fit = _fit_photos()
    counts = {"photos": 0, "spread<=2": 0, "channel_sums (thesis)": 0}
    for path in fit.photo_order(fit.PHOTO_ROOT):
        data = path.read_bytes()
        header = read_header(data, 10**9)
        counts["photos"] += 1
        spread = 0.0 if header.single_channel else grayscale_spread(decode_rgb(data, 10**9, header=header))
        counts["spread<=2"] += spread <= 2.0
        counts["channel_sums (thesis)"] += header.single_channel or equal_channel_sums(data)
    return counts


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=8, help="training photos for the generator-mode section")
    ap.add_argument("--holdout", type=int, default=16, help="photos it is scored on")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument(
        "--sections",
        default="gray_rule,teacher_input,lab8_ground_truth,resize_antialias,eval_view,test_set_sampling,generator_mode",
    )
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "protocols-cpu.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    results: dict = json.loads(args.out.read_text()) if args.out.is_file() else {}  # other sections' results stay
    results.update(machine=platform.node(), torch_threads=torch.get_num_threads())
    runners = {
        "gray_rule": gray_rule,
        "teacher_input": lambda: teacher_input(args.holdout),
        "lab8_ground_truth": lambda: lab8_ground_truth(80),
        "resize_antialias": lambda: resize_antialias(80),
        "eval_view": lambda: eval_view(80),
        "test_set_sampling": lambda: test_set_sampling(200),
        "generator_mode": lambda: generator_mode(args.photos, args.holdout, args.steps, args.batch_size),
    }
    for name in args.sections.split(","):
        t0 = time.perf_counter()
        results[name] = runners[name]()
        results[name]["seconds"] = round(time.perf_counter() - t0, 1)
        print(name, json.dumps(results[name]), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
