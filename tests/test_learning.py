"""Do the models learn? Each family must fit a handful of real photos; plus the real-photo profile's lists.

Why these tests exist: the sample run trains 12 steps, after which a working model and a broken one (a
wrong detach, a saturated discriminator, a branch that never trains, a train/eval mismatch) both score
below the gray baseline. Memorising a few real photos with the model's own losses, learning rates and
schedule is the weakest thing a working implementation must manage, so each slow test trains one family
on real ImageNet photos (``/work/shared/data/imagenet-sample``) and asserts that, on those same photos,
the model clearly beats the gray image (ab = 0): PSNR above it and LPIPS below it by margins measured
over several seeds (see ``FITS`` and bench/results/fit-photos-cpu.json). The training and scoring code
is ``bench/fit_photos.py``'s, which runs the same check on every model by hand.

The fast tests check the fixed train / held-out lists (``lists/``) and the resized copy tool.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
PHOTOS = Path("/work/shared/data/imagenet-sample")


def _bench(name: str):
    """Import ``bench/<name>.py`` (bench/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"chromapipe_bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# -- fitting real photos (slow) ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fit:
    """One family's check: train ``steps`` iterations on ``photos`` photos, then require the margins."""

    model: str
    photos: int
    steps: int
    psnr_margin: float  # dB above the gray baseline
    lpips_margin: float  # below the gray baseline
    options: dict | None = None  # recipe options set for this check (over the profile's)


# Margins: well below what these settings reach (bench/results/fit-photos-cpu.json, seed 0, same photos: at
# 100 steps pix2pix +6.6 dB and −0.17 LPIPS, PalGAN +8.3 dB and −0.19; at 60 steps ChromaGAN +7.3 dB and
# −0.13), so a working model passes with room and one that only reproduces gray (or worse) fails.
FITS = {
    "pix2pix": Fit("pix2pix", photos=4, steps=60, psnr_margin=1.5, lpips_margin=0.05),
    # ChromaGAN with PyTorch's BatchNorm constants: the authors' Keras ones (options.init: keras, the profile's)
    # move the running statistics by 1 % a step (momentum 0.01), too slowly for the eval-mode scoring after 60
    # steps to see what the network learnt (measured, same photos and seed: +0.6 dB with them, +7.1 dB without)
    "chromagan": Fit("chromagan", photos=4, steps=60, psnr_margin=1.0, lpips_margin=0.03, options={"init": "pytorch"}),
    "palgan": Fit("palgan", photos=4, steps=60, psnr_margin=3.0, lpips_margin=0.06),
}


@pytest.fixture(scope="module")
def threads():
    """Two threads at most (the CI box has 2 cores); restored afterwards for the rest of the suite."""
    before = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("CHROMAPIPE_TEST_THREADS", "2")))
    yield
    torch.set_num_threads(before)


def _check_fits(fit: Fit, seed: int = 0) -> None:
    if not PHOTOS.is_dir():
        pytest.skip(f"{PHOTOS} (real photos) is not on this machine")
    bench = _bench("fit_photos")
    from chromapipe.config import load_params

    cfg = load_params(REPO / "params.yaml").model(fit.model)
    if fit.options:
        cfg = dataclasses.replace(cfg, options={**cfg.options, **fit.options})
    record = bench.fit_and_score(cfg, n_photos=fit.photos, steps=fit.steps, seed=seed, diagnostics=False)
    model, gray = record["scores"]["model"], record["scores"]["gray"]
    summary = bench.summary_line(fit.model, record)
    print(summary)  # shown with `pytest -rP`: the figures behind a pass
    assert record["steps"] == fit.steps, summary
    assert model["psnr"] > gray["psnr"] + fit.psnr_margin, summary
    assert model["lpips"] < gray["lpips"] - fit.lpips_margin, summary


@pytest.mark.slow
def test_pix2pix_fits_real_photos(threads) -> None:
    """Thesis configuration ① (cGAN + 100·L1, BN U-Net scored in eval mode) memorises 4 photos."""
    _check_fits(FITS["pix2pix"])


@pytest.mark.slow
def test_chromagan_fits_real_photos(threads) -> None:
    """ChromaGAN (VGG16 backbone, MSE + KL + WGAN-GP critic, lr 2e-5) memorises 4 photos."""
    _check_fits(FITS["chromagan"])


@pytest.mark.slow
def test_palgan_fits_real_photos(threads) -> None:
    """PalGAN (E predicts the palette it is scored with; G assigns it) memorises 4 photos."""
    _check_fits(FITS["palgan"])


# -- the real-photo profile's fixed lists (fast) ----------------------------------------------------------------
def test_holdout_lists_are_disjoint_complete_and_readable(tmp_path) -> None:
    lists = _bench("make_holdout_lists")
    files = [f"n{i:08d}/n{i:08d}_photo.JPEG" for i in range(200)]
    train, holdout = lists.split_files(files, 20, lists.DEFAULT_SEED)
    assert len(holdout) == 20 and not set(train) & set(holdout) and sorted(train + holdout) == sorted(files)
    # membership depends on the path alone: the listing order changes nothing, an added file moves at most one
    assert lists.split_files(list(reversed(files)), 20, lists.DEFAULT_SEED) == (train, holdout)
    _, holdout2 = lists.split_files(files + ["zzz/extra.JPEG"], 20, lists.DEFAULT_SEED)
    assert len(set(holdout) & set(holdout2)) >= 19
    from chromapipe.data.sources import _read_file_list

    path = tmp_path / "holdout.txt"
    path.write_text(lists.render(holdout, "held-out", lists.DEFAULT_SEED, len(files)))
    assert _read_file_list(path) == holdout


def test_committed_lists_match_the_photos_and_the_generator() -> None:
    lists = _bench("make_holdout_lists")
    from chromapipe.data.sources import _read_file_list

    train = _read_file_list(REPO / "lists" / "imagenet-sample-train.txt")
    holdout = _read_file_list(REPO / "lists" / "imagenet-sample-holdout.txt")
    assert (len(train), len(holdout)) == (720, 80) and not set(train) & set(holdout)
    if PHOTOS.is_dir():
        assert (train, holdout) == lists.split_files(lists.list_files(PHOTOS), 80, lists.DEFAULT_SEED)


# -- the resized copy (fast) ------------------------------------------------------------------------------------
def test_resized_copy_keeps_small_and_gray_photos(tmp_path) -> None:
    from PIL import Image

    resized = _bench("make_resized_sample")
    assert resized.target_size(640, 480, 256) == (341, 256)
    assert resized.target_size(300, 900, 256) == (256, 768)
    assert resized.target_size(256, 200, 256) is None
    src = tmp_path / "src" / "n1"
    src.mkdir(parents=True)
    Image.new("RGB", (600, 400), (200, 30, 40)).save(src / "big.JPEG", quality=90)
    Image.new("L", (500, 300), 128).save(src / "gray.JPEG")
    Image.new("RGB", (200, 150), (0, 90, 200)).save(src / "small.JPEG")
    out = tmp_path / "out"
    for f in sorted(src.iterdir()):
        resized.resize_one(f, out / "n1" / f.name, 256)
    with Image.open(out / "n1" / "big.JPEG") as im:
        assert im.size == (384, 256) and im.mode == "RGB"
    with Image.open(out / "n1" / "gray.JPEG") as im:
        assert im.size == (427, 256) and im.mode == "L"
    assert (out / "n1" / "small.JPEG").read_bytes() == (src / "small.JPEG").read_bytes()
