"""``chromapipe score``: pairing by stem, clear errors on mismatches, protocol in the output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from chromapipe.cli import main


def _save(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


@pytest.fixture
def pair_dirs(tmp_path):
    astro = data.astronaut()[:96, :128]
    coffee = data.coffee()[:64, :80]
    _save(tmp_path / "gt" / "astro.png", astro)
    _save(tmp_path / "gt" / "coffee.png", coffee)
    _save(tmp_path / "pred" / "astro.png", astro[..., [1, 0, 2]])
    _save(tmp_path / "pred" / "coffee.png", (coffee // 2 + 40).astype(np.uint8))
    return tmp_path / "pred", tmp_path / "gt"


def test_score_directories_json_protocol(pair_dirs, capsys):
    pred, gt = pair_dirs
    assert main(["score", str(pred), str(gt), "--json", "--device", "cpu", "--no-fid"]) == 0
    out = json.loads(capsys.readouterr().out)
    pr = out["protocol"]
    assert pr["n_images"] == 2 and pr["color_space"] == "sRGB uint8"
    assert sorted(pr["resolutions"]) == ["128x96", "80x64"] and "native" in pr["resize"]
    assert {"torch", "lpips", "torch-fidelity"} <= set(pr["versions"])
    assert set(out["metrics"]) == {"psnr", "ssim", "lpips", "fid", "fd_effnetlite0", "cf", "cf_gt", "delta_cf"}
    assert out["metrics"]["psnr"] > 0 and 0 < out["metrics"]["ssim"] < 1
    if out["metrics"]["lpips"] is not None:
        assert pr["weights"]["lpips"]["sha256"]


def test_score_single_files_table(pair_dirs, capsys):
    pred, gt = pair_dirs
    assert main(["score", str(pred / "coffee.png"), str(gt / "coffee.png"), "--no-fid", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "1 image pair(s)" in out and "psnr" in out and "sRGB uint8" in out


def test_score_mismatched_names_lists_offenders(pair_dirs, capsys):
    pred, gt = pair_dirs
    _save(pred / "extra_pred.png", np.zeros((8, 8, 3), np.uint8))
    _save(gt / "extra_gt.jpg", np.zeros((8, 8, 3), np.uint8))
    assert main(["score", str(pred), str(gt)]) == 2
    err = capsys.readouterr().err
    assert "do not match" in err and "extra_pred" in err and "extra_gt" in err


def test_score_mismatched_sizes_lists_offenders(pair_dirs, capsys):
    pred, gt = pair_dirs
    _save(pred / "coffee.png", data.coffee()[:60, :80])
    assert main(["score", str(pred), str(gt)]) == 2
    err = capsys.readouterr().err
    assert "differ in size" in err and "coffee (pred 80x60, target 80x64)" in err and "astro" not in err


def test_score_file_vs_directory_is_an_error(pair_dirs, capsys):
    pred, gt = pair_dirs
    assert main(["score", str(pred / "astro.png"), str(gt)]) == 2
    assert "both be files or both be directories" in capsys.readouterr().err
