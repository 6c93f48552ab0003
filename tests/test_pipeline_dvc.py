"""End to end: `dvc repro` of this project in a temporary git repository, on real DVC, Ray and MLflow."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from chromapipe.codedeps import import_closure
from chromapipe.data.manifest import read_manifest
from chromapipe.layout import (
    CANDIDATE_ALIAS,
    CODE_FINGERPRINT_TAG,
    CONFIG_HASH_TAG,
    DATA_FINGERPRINT_TAG,
    DATASET_TAG,
    EVALUATION_DIR,
    MODELS_DIR,
    PREPARED_DIR,
    REGISTRY_DIR,
    REPORT_OUTPUTS,
    REPORTS_DIR,
    SUMMARY_DIR,
    Layout,
    eval_metric,
    eval_protocol_tag,
)
from tests.conftest import REPO, git_project, run_dvc


def inception_available() -> bool:
    from chromapipe.weights import WeightsUnavailable
    from chromapipe.weights.resolver import inception_weights_path

    try:
        inception_weights_path()
        return True
    except WeightsUnavailable:
        return False


TINY_PROFILE = {  # DVC requires every params section that dvc.yaml tracks to be present
    "seed": 0,
    "report": {"samples": 4},
    "tracking": {"experiment": "chromapipe"},
    "datasets": {
        "sample": {"size": 64, "crops_per_image": 4, "splits": {"train": 0.7, "val": 0.1, "test": 0.2}, "workers": 1}
    },
    "train": {
        "num_workers": 2,
        "resources_per_worker": {"CPU": 1},
        "log_every": 2,
        "image_every": 4,
        "checkpoint_every": 4,
    },
    "evaluate": {"batch_size": 4, "samples": 3},
    "models": {
        "tiny": {
            "arch": "tests.tiny_recipe:TinyRecipe",
            "dataset": "sample",
            "resolution": 32,
            "batch_size": 2,
            "steps": 6,
        },
        "tiny_b": {
            "arch": "tests.tiny_recipe:TinyRecipe",
            "dataset": "sample",
            "resolution": 32,
            "batch_size": 2,
            "steps": 4,
            "lr_g": 1.0e-3,
        },
    },
}


_dvc = run_dvc


@pytest.fixture(scope="module")
def repro(tmp_path_factory) -> Path:
    project = git_project(tmp_path_factory.mktemp("project"))
    (project / "params.yaml").write_text(yaml.safe_dump(TINY_PROFILE))
    _dvc(project, "repro")
    return project


def test_repro_builds_every_output(repro: Path) -> None:
    counts = read_manifest(repro / "data/prepared/sample").image_counts()
    assert counts["train"] == 24 and counts["test"] == 8
    # one copy on disk: the output is a hard link into DVC's cache (.dvc/config cache.type), not a second copy
    assert (repro / "models/tiny/generator.pt").stat().st_nlink >= 2
    metrics = json.loads((repro / "evaluation/tiny/sample/metrics.json").read_text())
    assert (
        metrics["protocol"]["n_images"] == 8
        and metrics["protocol"]["split"] == "test"
        and metrics["protocol"]["dataset"] == "sample"
    )
    assert 5 < metrics["metrics"]["psnr"] < 60 and 0 < metrics["metrics"]["ssim"] <= 1
    if inception_available():
        assert metrics["details"]["fid"]["n_samples"] == 8
    else:  # offline: FID is recorded as unavailable with its reason, never faked
        assert metrics["metrics"]["fid"] is None and "Inception" in metrics["unavailable"]["fid"]
    # both models trained in one Ray Train run (the train stage) and scored in one process (the evaluate stage)
    summaries = {m: json.loads((repro / "models" / m / "train.json").read_text()) for m in ("tiny", "tiny_b")}
    assert (
        summaries["tiny"]["ray"]["models_in_ray_run"]
        == ["tiny", "tiny_b"]
        == summaries["tiny_b"]["ray"]["models_in_ray_run"]
    )
    assert (summaries["tiny"]["steps"], summaries["tiny_b"]["steps"]) == (6, 4)
    assert json.loads((repro / "evaluation/summary/tiny_b.json").read_text())["sample"]["n_images"] == 8
    gray = json.loads((repro / "evaluation/gray/sample/metrics.json").read_text())
    assert gray["kind"] == "baseline" and gray["metrics"]["cf"] < 0.5  # ab = 0 is gray up to sRGB rounding
    assert len(list((repro / "evaluation/tiny/sample/samples").glob("*.png"))) == 3
    html = (repro / "reports/index.html").read_text()
    assert "tiny" in html and (repro / "reports/results.md").exists()


def test_metrics_and_runs_are_tracked(repro: Path) -> None:
    shown = json.loads(_dvc(repro, "metrics", "show", "--json"))
    flat = json.dumps(shown)
    assert "evaluation/summary/tiny.json" in flat and "psnr" in flat and "details" not in flat
    client = MlflowClient(f"sqlite:///{repro / 'mlflow.db'}")
    exp = client.get_experiment_by_name("chromapipe")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`chromapipe.model` = 'tiny'")
    assert len(runs) == 1
    run = runs[0]
    assert run.data.metrics["eval/sample/psnr"] == pytest.approx(
        json.loads((repro / "evaluation/tiny/sample/metrics.json").read_text())["metrics"]["psnr"]
    )
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/g_total")] == [2, 4, 6]


def test_second_repro_is_a_no_op(repro: Path) -> None:
    before = (repro / "models/tiny/generator.pt").stat().st_mtime_ns
    out = _dvc(repro, "repro")
    assert "Data and pipelines are up to date" in out, out
    assert (repro / "models/tiny/generator.pt").stat().st_mtime_ns == before
    status = _dvc(repro, "status")
    assert "up to date" in status


def test_every_generator_is_a_registered_version(repro: Path) -> None:
    """The register stage made each trained generator a version of chromapipe-<model> (its source: the pyfunc in
    the training run) with its provenance tags and @candidate; the evaluate stage put each (set, metric) and its
    protocol on it; the second repro above added no version."""
    client = MlflowClient(f"sqlite:///{repro / 'mlflow.db'}")
    for model in ("tiny", "tiny_b"):
        summary = json.loads((repro / "models" / model / "train.json").read_text())
        (version,) = client.search_model_versions(f"name = 'chromapipe-{model}'")
        assert version.run_id == summary["run_id"] and version.source.startswith("models:/m-")
        assert version.tags[CONFIG_HASH_TAG] == summary["config_hash"] and version.tags[DATASET_TAG] == "sample"
        assert all(len(version.tags[t]) == 12 for t in (DATA_FINGERPRINT_TAG, CODE_FINGERPRINT_TAG))
        assert client.get_model_version_by_alias(f"chromapipe-{model}", CANDIDATE_ALIAS).version == version.version
        record = json.loads((repro / "evaluation" / model / "sample" / "metrics.json").read_text())
        assert float(version.tags[eval_metric("sample", "psnr")]) == pytest.approx(record["metrics"]["psnr"])
        assert json.loads(version.tags[eval_protocol_tag("sample")])["split"] == "test"
        registered = json.loads((repro / REGISTRY_DIR / f"{model}.json").read_text())
        assert registered["model_uri"] == f"models:/chromapipe-{model}/{version.version}"


def test_promote_then_colorize_by_alias(repro: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from PIL import Image

    from chromapipe.cli import main

    monkeypatch.chdir(repro)  # the project's params.yaml and MLflow store
    assert main(["promote", "tiny"]) == 0
    Image.new("L", (40, 30), 128).save(tmp_path / "gray.png")
    uri = "models:/chromapipe-tiny@champion"
    assert main(["colorize", "-q", str(tmp_path / "gray.png"), "-o", str(tmp_path / "out"), "--model-uri", uri]) == 0
    with Image.open(tmp_path / "out" / "gray.png") as img:
        assert img.size == (40, 30)


def test_dvc_push_and_pull_restore_identical_generators(repro: Path, tmp_path: Path) -> None:
    """A local directory as the DVC remote: push, delete the generators and the whole cache, pull: same bytes."""
    from chromapipe.hashing import sha256_file

    generators = [repro / "models" / m / "generator.pt" for m in ("tiny", "tiny_b")]
    before = [sha256_file(g) for g in generators]
    _dvc(repro, "remote", "add", "--local", "-d", "local", str(tmp_path / "remote"))
    _dvc(repro, "push")
    for g in generators:
        g.unlink()
    shutil.rmtree(repro / ".dvc" / "cache")
    _dvc(repro, "pull")
    assert [sha256_file(g) for g in generators] == before
    assert "up to date" in _dvc(repro, "status")


def test_artifacts_are_every_models_generator() -> None:
    """dvc.yaml's artifacts: one per model of any profile (the union: a profile trains some of them), at the path
    chromapipe/layout.py gives its generator, with names DVC accepts."""
    from dvc.repo.artifacts import check_name_format

    artifacts = yaml.safe_load((REPO / "dvc.yaml").read_text())["artifacts"]
    layout = Layout(Path("."))
    profiles = ("params.yaml", "params-real.yaml", "params-paper.yaml")
    models = {m for profile in profiles for m in yaml.safe_load((REPO / profile).read_text())["models"]}
    assert set(artifacts) == models
    for name, artifact in artifacts.items():
        check_name_format(name)
        assert artifact["path"] == layout.generator(name).as_posix() and artifact["type"] == "model"


STAGE_SCRIPTS = {
    "prepare": "prepare",
    "train": "train",
    "register": "register",
    "evaluate": "evaluate",
    "report": "report",
}


@pytest.mark.parametrize("stage", STAGE_SCRIPTS)
def test_stage_deps_cover_the_code_it_imports(stage: str) -> None:
    """A stage whose code changed must rerun: its deps cover every project file its script can import."""
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]
    deps = [REPO / d for d in (spec.get("do") or spec)["deps"]]
    closure = import_closure([REPO / "pipeline" / f"{STAGE_SCRIPTS[stage]}.py"])
    uncovered = sorted(str(p.relative_to(REPO)) for p in closure if not any(p == d or d in p.parents for d in deps))
    assert not uncovered, f"dvc.yaml stage {stage!r} does not depend on code it runs: {uncovered}"


def test_stage_outs_are_where_the_layout_writes() -> None:
    """One owner for output paths: each stage's DVC ``outs`` (and the next stages' data deps) are exactly the
    paths ``chromapipe.layout`` has the stage write, so a stage never writes where DVC does not look."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    layout = Layout(Path("."))
    assert stages["prepare"]["do"]["outs"] == [f"{layout.prepared('${key}').as_posix()}"]
    assert stages["train"]["outs"] == [MODELS_DIR] and PREPARED_DIR in stages["train"]["deps"]
    assert stages["register"]["outs"] == [REGISTRY_DIR] and MODELS_DIR in stages["register"]["deps"]
    assert stages["evaluate"]["outs"] == [EVALUATION_DIR]
    assert {MODELS_DIR, PREPARED_DIR, REGISTRY_DIR} <= set(stages["evaluate"]["deps"])
    assert stages["report"]["outs"] == [f"{REPORTS_DIR}/{name}" for name in REPORT_OUTPUTS]
    assert EVALUATION_DIR in stages["report"]["deps"]
    assert yaml.safe_load((REPO / "dvc.yaml").read_text())["metrics"] == [f"{EVALUATION_DIR}/{SUMMARY_DIR}"]


def test_code_changes_rerun_the_stages_that_run_that_code(repro: Path) -> None:
    """Touching color.py outdates every stage that converts colors; config.py every stage; the report's
    code only the report; the MLflow-model packaging only the register stage (never training)."""
    expect = {
        "src/chromapipe/color.py": {"prepare@sample", "train", "register", "evaluate"},
        "src/chromapipe/config.py": {"prepare@sample", "train", "register", "evaluate", "report"},
        "src/chromapipe/reporting/tables.py": {"report"},
        "src/chromapipe/serving/pyfunc.py": {"register"},
        "src/chromapipe/serving/evaluations.py": {"register", "evaluate"},
    }
    for rel, stages in expect.items():
        path = repro / rel
        original = path.read_text()
        try:
            path.write_text(original + "\n# touched\n")
            status = json.loads(_dvc(repro, "status", "--json"))
            assert {name.split(":")[-1] for name in status} == stages, (rel, status)
        finally:
            path.write_text(original)
    assert "up to date" in _dvc(repro, "status")


@pytest.mark.slow  # a second Ray Train run (durations: reports/benchmarks.md, "Test suite: …")
def test_changed_model_params_retrain_that_model_only(repro: Path) -> None:
    """One model's params change: DVC reruns the train stage, which trains that model and brings the
    unchanged one back from its finished MLflow run (same run, same generator, no new steps)."""
    params_file = repro / "params.yaml"
    original = params_file.read_text()
    before = json.loads((repro / "models/tiny/train.json").read_text())
    try:
        changed = yaml.safe_load(original)
        changed["models"]["tiny_b"]["lr_g"] = 5.0e-4
        params_file.write_text(yaml.safe_dump(changed))
        _dvc(repro, "repro", "train")
        tiny = json.loads((repro / "models/tiny/train.json").read_text())
        tiny_b = json.loads((repro / "models/tiny_b/train.json").read_text())
        assert tiny["restored_from_mlflow"] and tiny["run_id"] == before["run_id"] and tiny["ray"] == {}
        assert not tiny_b["restored_from_mlflow"] and tiny_b["ray"]["models_in_ray_run"] == ["tiny_b"]
        client = MlflowClient(f"sqlite:///{repro / 'mlflow.db'}")
        assert [m.step for m in client.get_metric_history(tiny["run_id"], "train/g_total")] == [2, 4, 6]
        _dvc(repro, "repro", "register")  # the restored configuration adds no version; the retrained one does
        versions = {m: client.search_model_versions(f"name = 'chromapipe-{m}'") for m in ("tiny", "tiny_b")}
        assert (len(versions["tiny"]), len(versions["tiny_b"])) == (1, 2)
        assert client.get_model_version_by_alias("chromapipe-tiny_b", CANDIDATE_ALIAS).run_id == tiny_b["run_id"]
    finally:
        params_file.write_text(original)


def _tiny_project(tmp_path: Path) -> Path:
    """A project whose committed params.yaml is the tiny profile: experiments start from a clean commit."""
    project = git_project(tmp_path)
    (project / "params.yaml").write_text(yaml.safe_dump(TINY_PROFILE))
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "tiny profile"], cwd=project, check=True
    )
    return project


def _experiments(project: Path) -> dict[str, dict]:
    """`dvc exp show --json` as experiment name -> its params and metrics."""
    shown = json.loads(_dvc(project, "exp", "show", "--json"))
    return {r["name"]: r["data"] for rev in shown for e in rev.get("experiments") or [] for r in e["revs"]}


@pytest.mark.slow  # minutes (reports/benchmarks.md, "Test suite: …")
def test_experiment_in_a_temporary_copy(tmp_path: Path) -> None:
    """`dvc exp run --temp` (what `--queue` workers do): the stages run in a copy under .dvc/tmp/exps, their
    outputs and metrics come back with the experiment, and the MLflow run lands in the workspace's store."""
    project = _tiny_project(tmp_path)
    _dvc(project, "exp", "run", "--temp", "-n", "four-steps", "-S", "models.tiny.steps=4")
    assert not (project / "data").exists() and not (project / "models").exists()  # nothing ran in the workspace

    exps = _experiments(project)
    data = exps["four-steps"]
    assert data["params"]["params.yaml"]["data"]["models"]["tiny"]["steps"] == 4
    assert 5 < data["metrics"]["evaluation/summary/tiny.json"]["data"]["sample"]["psnr"] < 60

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("chromapipe").experiment_id])
    (run,) = [r for r in runs if r.data.tags.get("chromapipe.model") == "tiny"]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/g_total")] == [2, 4]

    _dvc(project, "exp", "apply", "four-steps")  # the experiment's outputs come back from the cache
    assert (project / "models/tiny/generator.pt").exists() and (project / "reports/index.html").exists()


@pytest.mark.slow
def test_queued_experiments(tmp_path: Path) -> None:
    """`dvc exp run --queue` + `--run-all`: DVC's Celery worker runs each queued variation in its own copy; both
    succeed with their own params and metrics, the workspace is untouched and both MLflow runs land in the
    workspace's store (minutes: reports/benchmarks.md, "Test suite: …")."""
    project = _tiny_project(tmp_path)
    for steps in (4, 6):
        _dvc(project, "exp", "run", "--queue", "-n", f"steps{steps}", "-S", f"models.tiny.steps={steps}")
    _dvc(project, "exp", "run", "--run-all", "-j", "1")
    assert "Failed" not in _dvc(project, "queue", "status")
    assert not (project / "data").exists() and not (project / "models").exists()

    exps = _experiments(project)
    assert {
        name: exps[name]["params"]["params.yaml"]["data"]["models"]["tiny"]["steps"] for name in ("steps4", "steps6")
    } == {"steps4": 4, "steps6": 6}
    assert all(
        "psnr" in exps[name]["metrics"]["evaluation/summary/tiny.json"]["data"]["sample"]
        for name in ("steps4", "steps6")
    )

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs(
        [client.get_experiment_by_name("chromapipe").experiment_id], filter_string="tags.`chromapipe.model` = 'tiny'"
    )
    histories = sorted([m.step for m in client.get_metric_history(r.info.run_id, "train/g_total")] for r in runs)
    assert histories == [[2, 4], [2, 4, 6]]
