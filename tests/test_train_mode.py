"""The thesis' generator mode: Lab-packed scores with the generator in train mode (dropout on, BatchNorm over
each batch), seeded, labelled as such, and the generator unchanged afterwards; the gray baseline's Lab-packed
numbers only where a model under that protocol is scored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from chromapipe.config import ModelConfig, load_params
from chromapipe.data.prepare import prepare
from chromapipe.evaluation.evaluate import evaluate
from chromapipe.evaluation.train_mode import generator_in_train_mode, ordered_batches
from chromapipe.models.checkpoint import save_generator
from chromapipe.models.registry import build_recipe
from tests.conftest import quick_params
from tests.tiny_recipe import TinyRecipe


class NoisyGenerator(nn.Module):
    """The pix2pix decoder's ingredients in small: BatchNorm and dropout between two convolutions."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.Dropout2d(0.5),
            nn.ReLU(),
            nn.Conv2d(8, 2, 3, padding=1),
        )

    def forward(self, L: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"ab": torch.tanh(self.net(L) * 3.0)}


class NoisyRecipe(TinyRecipe):
    arch = "tests.test_train_mode:NoisyRecipe"

    def build_generator(self) -> nn.Module:
        return NoisyGenerator()


def test_train_mode_leaves_the_pix2pix_generator_unchanged() -> None:
    """The thesis' generator (BatchNorm, Dropout2d) in train mode: outputs differ from eval mode and repeat with
    the seed, BatchNorm's running statistics move inside and are restored bit for bit, and so is the RNG."""
    torch.manual_seed(0)
    G = build_recipe(ModelConfig(arch="pix2pix", resolution=256, steps=1)).build_generator().eval()
    before = {k: v.clone() for k, v in G.state_dict().items()}
    x = torch.rand(2, 1, 256, 256) * 2 - 1
    with torch.no_grad():
        eval_out = G(x)["ab"]
        rng = torch.get_rng_state()
        runs = []
        for _ in range(2):
            with generator_in_train_mode(G, seed=7):
                assert G.training
                runs.append(G(x)["ab"])
                moved = any(not torch.equal(v, before[k]) for k, v in G.state_dict().items())
        assert torch.equal(torch.get_rng_state(), rng)  # the caller's RNG is untouched
    assert moved  # BatchNorm updated its running statistics in train mode ...
    after = G.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)  # ... and they are restored exactly
    assert not G.training
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)  # seeded: reproducible
    assert (runs[0] - eval_out).abs().mean() > 1e-3  # a different measurement from eval mode


def test_train_mode_batches_keep_the_stored_order() -> None:
    assert ordered_batches(7, 3) == [[0, 1, 2], [3, 4, 5, 6]]  # a lone last image joins the batch before
    assert ordered_batches(8, 3) == [[0, 1, 2], [3, 4, 5], [6, 7]]
    with pytest.raises(ValueError, match="at least 2 images"):
        ordered_batches(1, 8)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The sample photos at 64 px, a noisy model under the Lab-packed protocol and a plain one on another set."""
    root = tmp_path_factory.mktemp("trainmode")
    models = {
        "noisy": {"arch": NoisyRecipe.arch, "resolution": 32, "batch_size": 2, "steps": 1},
        "plain": {"arch": TinyRecipe.arch, "resolution": 32, "batch_size": 2, "steps": 1, "dataset": "other"},
    }
    path = quick_params(
        root,
        models=models,
        evaluate={"lab_packed": ["noisy"], "generator_mode": "both", "train_mode_batch_size": 3, "samples": 1},
    )
    raw = yaml.safe_load(path.read_text())
    raw["datasets"]["other"] = {**raw["datasets"]["sample"], "seed": 7}
    path.write_text(yaml.safe_dump(raw))
    params = load_params(path)
    for name in ("sample", "other"):
        prepare(params.dataset(name), params.dataset_dir(name))
    for name, cls in (("noisy", NoisyRecipe), ("plain", TinyRecipe)):
        torch.manual_seed(0)
        cfg = ModelConfig(arch=cls.arch, resolution=32, steps=1)
        G = cls(None, {}, 32).build_generator()
        with torch.no_grad():  # running statistics far from a batch's: train and eval mode must differ
            for m in G.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.fill_(0.5)
                    m.running_var.fill_(4.0)
        save_generator(root / "models" / name / "generator.pt", name, cfg, G, meta={"describe": {"ours": ["x"]}})
    return root


def test_both_modes_are_scored_and_labelled(project: Path) -> None:
    params = load_params(project / "params.yaml")
    generator = project / "models/noisy/generator.pt"
    stored = generator.read_bytes()
    (record,) = evaluate(params, "noisy")
    m = record.metrics
    assert {"lab_psnr", "lab_ssim", "lab_psnr_trainmode", "lab_ssim_trainmode", "lab_lpips_vgg_trainmode"} <= set(m)
    assert abs(m["lab_psnr"] - m["lab_psnr_trainmode"]) > 1e-3 and "psnr_trainmode" not in m  # sRGB: eval only
    assert "train mode" in record.protocol["generator_mode"] and "batch of 3" in record.protocol["generator_mode"]
    assert "train mode" in record.details["lab_psnr_trainmode"]["generator_mode"]
    assert record.details["lab_psnr"]["generator_mode"] == "eval"
    assert "lab_fid_trainmode" in record.unavailable  # fid: false in the quick profile, said per mode
    assert record.ours == ["x"]  # the trained model's run-time choices travel into its record
    assert generator.read_bytes() == stored
    scores = json.loads((project / "evaluation/summary/noisy.json").read_text())["sample"]
    assert scores["lab_psnr_trainmode"] == pytest.approx(m["lab_psnr_trainmode"])  # dvc metrics and MLflow keys


def test_train_mode_only(project: Path) -> None:
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["evaluate"]["generator_mode"] = "train"
    path = project / "params-train.yaml"
    path.write_text(yaml.safe_dump(raw))
    params = load_params(path)
    (record,) = evaluate(params, "noisy")
    assert "lab_psnr_trainmode" in record.metrics and "psnr" in record.metrics  # sRGB stays eval mode
    assert not any(
        k.startswith("lab_") and not k.endswith("_trainmode") for k in [*record.metrics, *record.unavailable]
    )
    assert "only in train mode" in record.protocol["generator_mode"]
    assert params.generator_modes("gray") == () and params.generator_modes("plain") == ()


def test_gray_baseline_scores_lab_packed_only_where_a_model_does(project: Path) -> None:
    params = load_params(project / "params.yaml")
    records = {r.dataset: r for r in evaluate(params, "gray")}
    assert set(records) == {"sample", "other"}
    assert "lab_psnr" in records["sample"].metrics  # noisy (Lab-packed) is scored on sample
    assert not any(k.startswith("lab_") for k in [*records["other"].metrics, *records["other"].unavailable])
    assert "generator_mode" not in records["sample"].protocol  # the baseline has no network
