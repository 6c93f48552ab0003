"""Every paper model trains under Ray Train with two CPU workers (gloo DDP) for a couple of steps.

The three fast cases cover each recipe and each critic (PatchGAN+BCE with the class branch and teacher
pseudo-labels is covered by the WGAN-GP+class case's branch; ChromaGAN's KL teacher; PalGAN's palettes).
The rest of the eight models run in the slow suite.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from chromapipe.config import load_params
from chromapipe.data.prepare import prepare
from chromapipe.models.checkpoint import load_generator
from chromapipe.training.run import train_model
from tests.conftest import REPO, quick_params

SHIPPED = yaml.safe_load((REPO / "params.yaml").read_text())["models"]
FAST = {"pix2pix_wgan_class", "chromagan", "palgan"}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("ray_models")
    params = load_params(quick_params(tmp, data={"size": 256, "crops_per_image": 2}))
    prepare(params.data)
    return tmp


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in SHIPPED])
def test_two_worker_ray_training(prepared: Path, name: str) -> None:
    model = {**SHIPPED[name], "steps": 2 * SHIPPED[name].get("n_critic", 1), "batch_size": 2}
    path = quick_params(prepared, models={name: model}, data={"size": 256, "crops_per_image": 2}, train={"resources_per_worker": {"CPU": 1.0}})
    summary = train_model(load_params(path), name)
    assert summary["steps"] == model["steps"] and summary["num_workers"] == 2
    recipe, G, _ = load_generator(prepared / "models" / name / "generator.pt")
    assert recipe.resolution == model["resolution"]
