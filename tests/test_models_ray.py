"""Every paper model trains under Ray Train with two CPU workers (gloo DDP) for a couple of steps.

The two fast cases cover the WGAN-GP critic with n_critic and the class branch on teacher pseudo-labels,
and PalGAN's palettes; the rest of the eight models run in the slow suite. ChromaGAN is slow for its disk,
not its time: its 171 M generator with Adam moments is a 2 GB checkpoint (its steps and KL term are tested
without Ray in test_models_chromagan.py). Each case writes only its final checkpoint and deletes its
outputs afterwards, so the suite needs about 2 GB of free disk at most.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from chromapipe.config import load_params
from chromapipe.data.prepare import prepare
from chromapipe.models.checkpoint import load_generator
from chromapipe.training.run import train_model
from tests.conftest import REPO, quick_params

SHIPPED = yaml.safe_load((REPO / "params.yaml").read_text())["models"]
FAST = {"pix2pix_wgan_class", "palgan"}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, local_ray) -> Path:
    tmp = tmp_path_factory.mktemp("ray_models")
    params = load_params(quick_params(tmp, data={"size": 256, "crops_per_image": 2}))
    prepare(params.dataset("sample"), params.dataset_dir("sample"))
    return tmp


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in SHIPPED])
def test_two_worker_ray_training(prepared: Path, name: str) -> None:
    # two steps: a resume checkpoint after the first (the last step logs the generator instead); a WGAN-GP
    # critic takes 2 steps per generator step instead of 5, the same code path: a critic-only step, then one
    # with the generator update. Global batch 4: 2 per worker (BatchNorm needs > 1).
    model = {**SHIPPED[name], "n_critic": min(2, SHIPPED[name].get("n_critic", 1)), "steps": 2, "batch_size": 4}
    half = 1
    train = {"resources_per_worker": {"CPU": 1.0}, "checkpoint_every": half, "keep_checkpoints": True}
    path = quick_params(prepared, models={name: model}, data={"size": 256, "crops_per_image": 2}, train=train)
    try:
        summary = train_model(load_params(path), name)
        assert summary["steps"] == model["steps"] and summary["num_workers"] == 2
        checkpoints = list((prepared / "ray").glob(f"{name}-*/checkpoint_*/state.pt"))
        assert [c.parent.name for c in checkpoints] == [f"checkpoint_{half:09d}"]  # written in place
        recipe, G, _ = load_generator(prepared / "models" / name / "generator.pt")
        assert recipe.resolution == model["resolution"]
    finally:
        for out in ("ray", "models", "mlartifacts"):
            shutil.rmtree(prepared / out, ignore_errors=True)
