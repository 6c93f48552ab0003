"""The evaluate stage called directly: the record it writes, samples, palettes, and the resize round trip
of a model whose resolution differs from the data's (ChromaGAN's 224 on 256-px data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from chromapipe.config import ModelConfig, load_params
from chromapipe.data.manifest import read_manifest
from chromapipe.data.prepare import prepare
from chromapipe.data.shards import LabShardDataset
from chromapipe.evaluation.evaluate import evaluate, evaluate_all
from chromapipe.metrics.record import MetricsRecord
from chromapipe.models.checkpoint import save_generator
from chromapipe.models.palette import GRID
from tests.conftest import quick_params
from tests.tiny_recipe import TinyPaletteRecipe, TinyRecipe


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """64-px sample crops and two generators at 32 px (half the data's size): a plain and a palette one."""
    root = tmp_path_factory.mktemp("eval")
    models = {
        name: {"arch": cls.arch, "resolution": 32, "batch_size": 2, "steps": 1}
        for name, cls in (("tiny", TinyRecipe), ("tiny_palette", TinyPaletteRecipe))
    }
    params = load_params(quick_params(root, models=models, evaluate={"samples": 3, "lab_packed": ["tiny"]}))
    prepare(params.dataset("sample"), params.dataset_dir("sample"))
    for name, cls in (("tiny", TinyRecipe), ("tiny_palette", TinyPaletteRecipe)):
        torch.manual_seed(0)
        cfg = ModelConfig(arch=cls.arch, resolution=32, steps=1)
        save_generator(root / "models" / name / "generator.pt", name, cfg, cls(None, {}, 32).build_generator(), meta={})
    return root


def test_model_record_samples_and_protocol(project: Path) -> None:
    params = load_params(project / "params.yaml")
    (record,) = evaluate(params, "tiny")
    n_test = len(LabShardDataset(project / "data" / "prepared" / "sample", "test"))
    assert record.protocol["n_images"] == n_test == 8
    test_split = read_manifest(project / "data" / "prepared" / "sample").split("test")
    assert record.protocol["n_sources"] == test_split.n_sources == 2  # photos, not crops: the manifest's count
    assert record.protocol["resolution"] == 64 and record.kind == "measured" and record.arch == TinyRecipe.arch
    assert (
        record.dataset == "sample" and record.protocol["role"] == "train" and record.protocol["dataset_label"] is None
    )
    on_disk = MetricsRecord.read(project / "evaluation" / "tiny" / "sample")
    assert on_disk.to_json() == json.loads(json.dumps(record.to_json()))  # what is written is what is returned
    assert json.loads((project / "evaluation/summary/tiny.json").read_text())["sample"]["n_images"] == 8
    assert len(list((project / "evaluation/tiny/sample/samples").glob("*.png"))) == 3
    assert not (project / "evaluation/tiny/sample/ground_truth").exists()  # only the gray baseline writes those
    assert not (project / "evaluation/tiny/sample/palettes.npz").exists()  # a model without a palette writes none
    assert 5 < record.metrics["psnr"] < 60 and record.metrics["cf"] > 1  # random weights: colored, wrong
    # the thesis' protocol beside sRGB (evaluate.lab_packed), with its own color space in the details
    assert (
        set(record.summary()) >= {"psnr", "lab_psnr", "lab_ssim", "lab_lpips_vgg"}
        and record.metrics["lab_psnr"] != record.metrics["psnr"]
    )
    assert (
        "NOT sRGB" in record.details["lab_psnr"]["color_space"] and "lab_fid" in record.unavailable
    )  # fid: false here


def test_gray_baseline_is_a_predictor_like_any_other(project: Path) -> None:
    params = load_params(project / "params.yaml")
    (record,) = evaluate_all(params, ["gray"])["gray"]  # the baseline writes the ground truth the report shows
    assert record.kind == "baseline" and record.run_id is None
    assert "lab_psnr" in record.metrics  # the reference line of the models scored under the thesis' protocol
    assert record.metrics["cf"] < 0.5  # ab = 0 is gray up to sRGB rounding
    truths = sorted((project / "evaluation/gray/sample/ground_truth").glob("*.png"))
    assert len(truths) == 3


def test_palette_model_writes_its_palettes(project: Path) -> None:
    params = load_params(project / "params.yaml")
    (record,) = evaluate(params, "tiny_palette")
    assert not any(k.startswith("lab_") for k in [*record.metrics, *record.unavailable])  # not in evaluate.lab_packed
    palettes = np.load(project / "evaluation/tiny_palette/sample/palettes.npz")
    assert palettes["pred"].shape == palettes["gt"].shape == (3, GRID, GRID)
    np.testing.assert_allclose(palettes["gt"].sum(axis=(1, 2)), 1.0, atol=1e-5)
    # the ground-truth palettes are those of the first test images' true colors
    data = LabShardDataset(project / "data" / "prepared" / "sample", "test")
    truth = torch.stack([data[i]["ab"] for i in range(3)])
    expected = TinyPaletteRecipe(None, {}, 32).palette_target(truth).numpy().reshape(3, GRID, GRID)
    np.testing.assert_allclose(palettes["gt"], expected, atol=1e-6)


def test_predict_resizes_to_the_model_and_back() -> None:
    """A model at 32 px scores 64-px data: its input is L resized to 32, its ab comes back at 64, and a
    spatially constant prediction survives the round trip exactly."""
    recipe = TinyRecipe(None, {}, 32)
    seen = {}

    class Constant(torch.nn.Module):
        def forward(self, L: torch.Tensor) -> dict[str, torch.Tensor]:
            seen["shape"] = tuple(L.shape)
            return {"ab": torch.full((L.shape[0], 2, *L.shape[-2:]), 0.25)}

    out = recipe.predict(Constant(), torch.rand(2, 1, 64, 64) * 100)
    assert seen["shape"] == (2, 1, 32, 32)
    assert out["ab"].shape == (2, 2, 64, 64) and "palette" not in out
    torch.testing.assert_close(out["ab"], torch.full((2, 2, 64, 64), 0.25 * 128.0))


def test_evaluation_matrix_with_a_fixed_eval_set(tmp_path: Path, project: Path) -> None:
    """A model scored on its training set and on an eval-role set built from a file list, resized whole to
    224² as ChromaGAN's protocol does: every listed image is scored (a small one and a grayscale one
    included), each (model, set) has its own record, and the gray baseline is scored on both sets."""
    from PIL import Image

    root = tmp_path / "holdout"
    photos = {
        "a/wide.png": (300, 200, "RGB"),
        "a/small.png": (90, 60, "RGB"),
        "b/gray.png": (256, 256, "L"),
        "b/unlisted.png": (256, 256, "RGB"),
    }
    rng = np.random.default_rng(0)
    for rel, (w, h, mode) in photos.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).convert(mode).save(root / rel)
    (tmp_path / "list.txt").write_text("a/wide.png\na/small.png\nb/gray.png\n")
    path = quick_params(
        tmp_path,
        models={"tiny": {"arch": TinyRecipe.arch, "resolution": 32, "batch_size": 2, "steps": 1}},
        prepared_in=project,
        evaluate={"sets": {"tiny": ["sample", "holdout"]}, "samples": 2},
    )
    raw = __import__("yaml").safe_load(path.read_text())
    raw["datasets"]["holdout"] = {
        "source": "folder",
        "root": str(root),
        "file_list": str(tmp_path / "list.txt"),
        "role": "eval",
        "size": 224,
        "resize": "resize",
        "label": "ILSVRC2012 (1,000 images)",
        "workers": 1,
    }
    path.write_text(__import__("yaml").safe_dump(raw))
    (tmp_path / "models").symlink_to(project / "models", target_is_directory=True)  # the generator trained there
    params = load_params(path)
    manifest = prepare(params.dataset("holdout"), params.dataset_dir("holdout"))
    assert manifest.split("test").n_images == 3  # every listed image, the small and the gray one too

    records = {r.dataset: r for r in evaluate(params, "tiny")}
    assert set(records) == {"sample", "holdout"}
    held = records["holdout"].protocol
    assert (held["n_images"], held["resolution"], held["resize"], held["role"], held["dataset_label"]) == (
        3,
        224,
        "resize",
        "eval",
        "ILSVRC2012 (1,000 images)",
    )
    assert records["sample"].protocol["resolution"] == 64
    assert (
        MetricsRecord.read(tmp_path / "evaluation" / "tiny" / "holdout").metrics["psnr"]
        == records["holdout"].metrics["psnr"]
    )
    assert set(json.loads((tmp_path / "evaluation/summary/tiny.json").read_text())) == {"sample", "holdout"}
    gray = {r.dataset for r in evaluate(params, "gray", ground_truth=True)}
    assert gray == {"sample", "holdout"}
