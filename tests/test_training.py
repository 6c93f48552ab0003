"""Ray Train on a real local cluster (2 CPU workers, gloo DDP) with a real MLflow SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from chromapipe.config import load_params
from chromapipe.data.manifest import read_manifest
from chromapipe.data.prepare import prepare
from chromapipe.hashing import source_fingerprint
from chromapipe.layout import DATA_COUNTS_PARAMS, DATA_PARAMS
from chromapipe.models.checkpoint import CheckpointError, load_generator
from chromapipe.training import run
from chromapipe.training.run import train_model
from tests.conftest import quick_params


@pytest.fixture(scope="module")
def project(tmp_path_factory, local_ray) -> Path:
    tmp = tmp_path_factory.mktemp("train")
    params = load_params(quick_params(tmp))
    prepare(params.dataset("sample"), params.dataset_dir("sample"))
    return tmp


def test_two_worker_training_logs_to_mlflow_and_resumes(project: Path) -> None:
    params = load_params(project / "params.yaml")
    first = train_model(params, "tiny")
    assert first["steps"] == 8 and not first["resumed"] and first["ray"]["nodes"] >= 1
    recipe, G, info = load_generator(project / "models" / "tiny" / "generator.pt")
    assert info["meta"]["run_id"] == first["run_id"] and info["meta"]["steps"] == 8
    assert json.loads((project / "models" / "tiny" / "train.json").read_text())["config_hash"] == first["config_hash"]

    client = MlflowClient(params.tracking.uri)
    run = client.get_run(first["run_id"])
    assert run.data.params["model.lr_g"] == "0.0002" and run.data.tags["chromapipe.model"] == "tiny"
    history = client.get_metric_history(first["run_id"], "train/g_total")
    assert [m.step for m in history] == [2, 4, 6, 8] and all(np.isfinite(m.value) for m in history)
    assert client.get_metric_history(first["run_id"], "train/images_per_s")
    assert run.info.artifact_uri.removeprefix("file://").startswith(str(project / "mlartifacts")), run.info.artifact_uri
    artifacts = {a.path for a in client.list_artifacts(first["run_id"])}
    assert {"generator", "train.json"} <= artifacts
    assert {a.path for a in client.list_artifacts(first["run_id"], "generator")} == {
        "generator/generator.pt",
        "generator/preprocessing.json",
    }
    assert any("preview" in a.path for a in client.list_artifacts(first["run_id"], "images"))
    # validation during training: the gray baseline once, the model at the last step (validate_every 50 > 8)
    assert [m.step for m in client.get_metric_history(first["run_id"], "val/psnr")] == [8]
    assert [m.step for m in client.get_metric_history(first["run_id"], "val_gray/psnr")] == [0]
    assert {"val/ssim", "val/lpips", "val/cf", "val/delta_cf", "val/seconds"} <= set(run.data.metrics) | set(
        client.get_run(first["run_id"]).data.metrics
    )
    assert not list((project / "ray").glob("tiny-*")), "the finished run's resume checkpoints are dropped once exported"

    (project / "models" / "tiny" / "generator.pt").unlink()
    again = train_model(params, "tiny")  # same params: the finished run's generator comes back from MLflow
    assert (
        again["resumed"]
        and again["restored_from_mlflow"]
        and again["run_id"] == first["run_id"]
        and again["steps"] == 8
    )
    assert len(client.get_metric_history(first["run_id"], "train/g_total")) == 4  # nothing was trained again
    _, G_again, _ = load_generator(project / "models" / "tiny" / "generator.pt")
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), G_again.state_dict().values()))


@pytest.mark.slow  # a Ray Train run; the DVC side of "code changed" is in the fast suite (test_pipeline_dvc)
def test_changed_code_trains_afresh(project: Path, monkeypatch) -> None:
    """DVC reruns the train stage when model/training code changes; that must not resume the old run."""
    params = load_params(project / "params.yaml")
    before = train_model(params, "tiny")
    monkeypatch.setattr(run, "_code_fingerprint", lambda recipe: "edited code")
    after = train_model(params, "tiny")
    assert (
        not after["resumed"] and after["run_id"] != before["run_id"] and after["config_hash"] != before["config_hash"]
    )
    assert len(MlflowClient(params.tracking.uri).get_metric_history(after["run_id"], "train/g_total")) == 4


def test_source_fingerprint_follows_names_and_contents(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "notes.txt").write_text("not code")
    first = source_fingerprint(pkg)
    (pkg / "notes.txt").write_text("still not code")
    assert source_fingerprint(pkg) == first
    (pkg / "a.py").write_text("x = 2\n")
    edited = source_fingerprint(pkg)
    assert edited != first
    (pkg / "a.py").rename(pkg / "b.py")
    assert source_fingerprint(pkg) not in (first, edited)


def test_changed_params_start_a_fresh_run(tmp_path: Path, project: Path) -> None:
    """The run a stage resumes is found from the real params: the same params find the same run, any
    changed model value (here lr_g) names a new one."""
    base = {"arch": "tests.tiny_recipe:TinyRecipe", "resolution": 32, "batch_size": 2, "steps": 8}
    store = {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    paths = {}
    for lr in (2e-4, 1e-3):
        (tmp_path / str(lr)).mkdir()
        paths[lr] = quick_params(
            tmp_path / str(lr),
            models={"tiny": {**base, "lr_g": lr}},
            prepared_in=project,
            tracking=store,
        )
    a = run.start(load_params(paths[2e-4]), "tiny")
    b = run.start(load_params(paths[1e-3]), "tiny")
    a2 = run.start(load_params(paths[2e-4]), "tiny")
    assert a.config_hash != b.config_hash and a2.config_hash == a.config_hash
    assert b.run_id != a.run_id and a2.run_id == a.run_id
    assert (a.resumed, b.resumed, a2.resumed) == (False, False, True) and not a2.finished
    # what the run logs of its data comes from the manifest record: its content params and images per split
    manifest = read_manifest(load_params(paths[2e-4]).dataset_dir("sample"))
    logged = MlflowClient(store["uri"]).get_run(a.run_id).data.params
    assert logged[f"{DATA_COUNTS_PARAMS}.train"] == str(manifest.split("train").n_images)
    assert {f"{DATA_COUNTS_PARAMS}.{k}" for k in manifest.image_counts()} <= set(logged)
    assert logged[f"{DATA_PARAMS}.size"] == str(manifest.size)


@pytest.mark.slow  # inductor compiles the tiny recipe in each of the two worker processes
def test_compiled_two_worker_training_exports_the_plain_generator(tmp_path: Path, project: Path) -> None:
    """``train.compile`` through the real loop: two gloo workers, DDP around compiled G and D
    (``performance.apply_to_pair``), a mid-run checkpoint, the compile counts logged to MLflow, and the
    exported generator loads with the plain module's state_dict keys (compiled in place, not wrapped)."""
    model = {"arch": "tests.tiny_recipe:TinyRecipe", "resolution": 32, "batch_size": 4, "steps": 4}
    path = quick_params(
        tmp_path,
        models={"tiny": model},
        prepared_in=project,
        train={"compile": True, "resources_per_worker": {"CPU": 1.0}},
    )
    summary = train_model(load_params(path), "tiny")
    assert summary["steps"] == 4 and summary["num_workers"] == 2
    recipe, G, _ = load_generator(tmp_path / "models" / "tiny" / "generator.pt")
    assert list(G.state_dict()) == list(recipe.build_generator().state_dict())
    client = MlflowClient(load_params(path).tracking.uri)
    history = client.get_metric_history(summary["run_id"], "train/g_total")
    assert [m.step for m in history] == [2, 4] and all(np.isfinite(m.value) for m in history)
    # what compiling did, on the run's page: G, D as trained and as frozen for the G update; no breaks
    compiled = {
        k: client.get_metric_history(summary["run_id"], f"compile/{k}")[-1].value for k in ("graphs", "graph_breaks")
    }
    assert compiled == {"graphs": 3, "graph_breaks": 0}


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="generator checkpoint not found"):
        load_generator(tmp_path / "nope.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a loadable chromapipe checkpoint"):
        load_generator(tmp_path / "bad.pt")
