"""`chromapipe export`: safetensors + config + model card that the Colorizer reads anywhere, and ONNX graphs that
pass onnx.checker and match torch in onnxruntime (real onnx, onnxruntime and the dynamo exporter)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from chromapipe import Colorizer
from chromapipe.cli import main as cli_main
from chromapipe.config import ModelConfig
from chromapipe.layout import Layout
from chromapipe.metrics.record import MetricsRecord
from chromapipe.models.checkpoint import save_generator
from tests.images import photo
from tests.tiny_recipe import TinyPaletteRecipe, TinyRecipe

pytest.importorskip("onnxruntime")


def project_with_a_trained_model(root: Path, recipe: type = TinyRecipe) -> Path:
    """A project as `dvc repro` leaves it for one model: params, models/tiny/generator.pt, its evaluation record."""
    root.mkdir(parents=True, exist_ok=True)
    params = {"datasets": {"sample": {}}, "models": {"tiny": {"arch": recipe.arch, "dataset": "sample", "steps": 6}}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    layout = Layout(root)
    torch.manual_seed(0)
    cfg = ModelConfig(arch=recipe.arch, resolution=32, steps=6, batch_size=2, dataset="sample")
    save_generator(
        layout.generator("tiny"), "tiny", cfg, recipe(None, {}, 32).build_generator(), meta={"run_id": "r1", "steps": 6}
    )
    protocol = {"dataset": "sample", "split": "test", "n_images": 8, "resolution": 64, "color_space": "sRGB uint8"}
    MetricsRecord(
        name="tiny",
        run_id="r1",
        protocol=protocol,
        metrics={"psnr": 22.25, "fid": None},
        unavailable={"fid": "no Inception weights"},
    ).write(layout.evaluation_record("tiny", "sample"))
    MetricsRecord(name="tiny", run_id="other-run", protocol={"dataset": "stale"}, metrics={"psnr": 99.0}).write(
        layout.evaluation_record("tiny", "stale")
    )
    return root


def test_safetensors_round_trip_in_a_fresh_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = project_with_a_trained_model(tmp_path / "project")
    monkeypatch.chdir(project)
    assert cli_main(["export", "tiny", "--format", "safetensors", "-o", str(tmp_path / "export")]) == 0
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert config["format"] == "chromapipe-portable/1" and config["config"]["arch"] == TinyRecipe.arch
    assert [r["run_id"] for r in config["evaluation"]] == ["r1"]  # only this generator's record, not another run's
    card = (tmp_path / "export" / "README.md").read_text()
    assert "| psnr | 22.25 |" in card and "split: test" in card and "not computed: no Inception weights" in card
    assert "99" not in card and "model.safetensors" in card

    gray = photo(40, 60)[..., 0]
    expected = np.asarray(Colorizer.load("tiny")(Image.fromarray(gray)))
    fresh = tmp_path / "elsewhere"
    fresh.mkdir()
    (tmp_path / "export").rename(fresh / "tiny-export")
    monkeypatch.chdir(fresh)  # no params.yaml, no models/, no MLflow store
    loaded = Colorizer.load("tiny-export")
    assert (loaded.name, loaded.resolution) == ("tiny", 32)
    # aligned as torch allocates (safetensors' own offsets are 8-byte): CPU kernels then sum in the same order as
    # for the generator file, and a PalGAN export colorizes bit for bit alike (README, reports/benchmarks.md)
    assert all(t.data_ptr() % 64 == 0 for t in loaded.G.state_dict().values())
    assert np.array_equal(np.asarray(loaded(Image.fromarray(gray))), expected)
    assert not (fresh / "mlflow.db").exists()


def test_onnx_export_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The command on a palette model: checked, batch dynamic, palette output; the figures are printed."""
    import onnx
    import onnxruntime as ort

    ckpt = project_with_a_trained_model(tmp_path, TinyPaletteRecipe) / "models" / "tiny" / "generator.pt"
    assert cli_main(["export", str(ckpt), "--format", "onnx", "-o", str(tmp_path / "onnx")]) == 0
    printed = capsys.readouterr().out
    assert "onnxruntime vs torch, ab: max |diff|" in printed and "palette" in printed
    onnx.checker.check_model(str(tmp_path / "onnx" / "model.onnx"))
    config = json.loads((tmp_path / "onnx" / "config.json").read_text())
    parity = config["parity"]["outputs"]
    assert parity["ab"]["max_abs_diff"] <= parity["ab"]["tolerance"] == pytest.approx(0.0256)
    session = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["ab", "palette"]
    ab, palette = session.run(None, {"L": np.full((5, 1, 32, 32), 50.0, np.float32)})  # a batch it never saw
    assert ab.shape == (5, 2, 32, 32) and palette.shape == (5, 256)
    assert "## ONNX check" in (tmp_path / "onnx" / "README.md").read_text()
    assert cli_main(["export", str(tmp_path / "nope.pt"), "--format", "onnx", "-o", str(tmp_path / "x")]) == 2


@pytest.mark.slow  # about 45 s: three full-size generators through the dynamo exporter and onnxruntime
@pytest.mark.parametrize(
    "arch, resolution, options",
    [("pix2pix", 256, {}), ("chromagan", 224, {"backbone_weights": "random"}), ("palgan", 256, {})],
)
def test_onnx_parity_of_the_papers_architectures(arch: str, resolution: int, options: dict, tmp_path: Path) -> None:
    """Each paper's generator (random weights: the graph is what is tested) exported and run in onnxruntime at a
    batch the export never saw: within the stated tolerance of torch (figures in reports/benchmarks.md)."""
    from chromapipe.models.registry import build_recipe
    from chromapipe.serving.onnx_export import AB_TOLERANCE, check_parity, export_onnx

    cfg = ModelConfig(arch=arch, resolution=resolution, steps=1, options=options)
    recipe = build_recipe(cfg)
    torch.manual_seed(0)
    G = recipe.build_generator()
    for name in recipe.training_only():  # as a generator file holds it
        parent, _, attr = name.rpartition(".")
        setattr(G.get_submodule(parent) if parent else G, attr, None)
    G.eval()
    exported = export_onnx(recipe, G, tmp_path / "model.onnx")
    parity = check_parity(recipe, G, tmp_path / "model.onnx")
    row = parity["outputs"]["ab"]
    diff = f"ab max |diff| {row['max_abs_diff']:.3g}, mean {row['mean_abs_diff']:.3g}"
    print(f"{arch}: export {exported['seconds']} s; {diff}")
    assert row["max_abs_diff"] <= AB_TOLERANCE
    assert ("palette" in parity["outputs"]) == recipe.has_palette
