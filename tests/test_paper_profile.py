"""The paper profile in miniature, end to end, as a new user runs it: `dvc repro` of ``params-paper.yaml`` with
its roots pointed at the real dataset layouts built from a few real photos (ImageNet train folders, a flat val
folder with ctest10k-style and first-1000 lists, a COCO val folder, Places205 class folders with the thesis'
saved split), one optimiser step per model. Every paper table's measured cell must come from the record of its
(model, set), Table 2 must show both generator modes, and the open choices must be listed (slow: minutes)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from chromapipe.config import load_params
from chromapipe.data.manifest import read_manifest
from chromapipe.metrics.record import MetricsRecord
from chromapipe.reporting import published as pub
from chromapipe.reporting.evalsets import EvalIndex, load_evaluations
from chromapipe.reporting.tables import build_tables, fmt
from tests import paper_layouts as layouts
from tests.conftest import REPO, git_project, run_dvc

pytestmark = pytest.mark.slow


def _dvc(project: Path, *args: str) -> str:
    return run_dvc(project, *args, timeout=2400)


def _datasets(root: Path) -> dict[str, Path]:
    """The four real layouts under ``root``, from distinct real photos."""
    train = layouts.imagenet_train(
        root / "imagenet" / "train", layouts.pick(10, start=100, include=(layouts.SMALL, layouts.GRAY_L))
    )
    val, ctest, first = layouts.imagenet_val(root / "imagenet" / "val", layouts.pick(8, start=300), ctest=4, first=6)
    coco = layouts.coco_val(root / "cocostuff" / "val2017", layouts.pick(4, start=500))
    places, split_csv = layouts.places205(
        root / "places205-10pct",
        {"abbey": layouts.pick(12, start=600, include=(layouts.GRAY_L,)), "beach": layouts.pick(12, start=700)},
    )
    return {
        "train": train,
        "val": val,
        "ctest": ctest,
        "first": first,
        "coco": coco,
        "places": places,
        "split": split_csv,
    }


def miniature(raw: dict, paths: dict[str, Path]) -> dict:
    """``params-paper.yaml`` as a user points it at their copies, cut to one step per model on a CPU."""
    where = {
        "places205_10pct": {"root": paths["places"], "split_file": paths["split"]},
        "imagenet_train": {"root": paths["train"]},
        "imagenet_train_224": {"root": paths["train"]},
        "imagenet_ctest10k": {"root": paths["val"], "file_list": paths["ctest"]},
        "imagenet_val50k": {"root": paths["val"]},
        "cocostuff_val": {"root": paths["coco"]},
        "ilsvrc2012_val1k": {"root": paths["val"], "file_list": paths["first"]},
    }
    assert set(where) == set(raw["datasets"]), "a paper dataset this test does not build"
    for name, spec in raw["datasets"].items():
        spec.update({k: str(v) for k, v in where[name].items()}, workers=1, shard_size=64)
        if spec["role"] == "train" and not spec.get("split_file"):
            spec["splits"] = {"train": 0.8, "val": 0.2, "test": 0.0}  # a val image for the handful of photos
    raw["train"].update(
        num_workers=1, use_gpu=False, resources_per_worker={"CPU": 1}, loader_workers=0, log_every=1,
        checkpoint_every=1000, image_every=1000, validate_every=0,
    )  # fmt: skip
    raw["evaluate"].update(batch_size=4, samples=2)
    raw["report"]["samples"] = 2
    for spec in raw["models"].values():
        spec.pop("epochs")
        spec.update(steps=1, batch_size=2)
    return raw


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    layouts.photos()
    paths = _datasets(tmp_path_factory.mktemp("datasets"))
    project = git_project(tmp_path_factory.mktemp("project"))
    raw = miniature(yaml.safe_load((REPO / "params-paper.yaml").read_text()), paths)
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    _dvc(project, "repro")
    return project, paths


def _record(project: Path, model: str, dataset: str) -> MetricsRecord:
    data = json.loads((project / "evaluation" / model / dataset / "metrics.json").read_text())
    return MetricsRecord.from_json(data, model)


def test_data_follow_each_papers_protocol(paper_run) -> None:
    project, paths = paper_run
    layout = load_params(project / "params.yaml").layout
    manifest = lambda name: read_manifest(layout.prepared(name))  # noqa: E731
    split = pd.read_csv(paths["split"])
    ids = manifest("places205_10pct").split("test").ids
    assert ids == split.loc[split["split"] == "test", "file_name"].tolist()  # the thesis' test images, its order
    chroma, palgan = manifest("imagenet_train_224"), manifest("imagenet_train")
    assert chroma.skipped == [] and chroma.n_grayscale >= 1 and chroma.n_upscaled >= 1
    assert {s.reason for s in palgan.skipped} == {"too_small", "grayscale"}
    counts = {n: manifest(n).split("test").n_images for n in ("imagenet_ctest10k", "ilsvrc2012_val1k")}
    assert counts == {"imagenet_ctest10k": 4, "ilsvrc2012_val1k": 6}


def test_every_paper_cell_comes_from_its_model_and_set(paper_run) -> None:
    project, _ = paper_run
    params = load_params(project / "params.yaml")
    missing: list[str] = []
    index = EvalIndex(load_evaluations(project / "evaluation", missing))
    tables = {t.key: t for t in build_tables(index, {})}
    md = (project / "reports" / "results.md").read_text()

    main = tables["table1"].frame
    row = main[main[("", "method")] == "palgan (↔ PalGAN ¹)"].iloc[0]
    for set_name in params.evaluation_sets("palgan"):
        label = params.dataset(set_name).label
        value = fmt("psnr", _record(project, "palgan", set_name).metrics["psnr"])
        assert row[(label, "PSNR↑")] == value, (set_name, label)
    chroma = tables["table3"].frame
    cells = dict(zip(chroma[("", "method")], chroma[("", "PSNR (dB)↑")]))
    for model in ("chromagan", "chromagan_no_class", "chromanet"):
        label = f"{model} (↔ {pub.paper_row(model, pub.CHROMAGAN_PSNR)})"
        assert cells[label] == fmt("psnr", _record(project, model, "ilsvrc2012_val1k").metrics["psnr"]), model
        assert f"| {label} |" in md
    ca = tables["ca_ablation"].frame
    ca_cells = dict(zip(ca[("", "method")], ca[("metrics", "PSNR↑")]))
    for model in pub.CA_VARIANTS:
        assert ca_cells[model] == fmt("psnr", _record(project, model, "cocostuff_val").metrics["psnr"]), model

    thesis = tables["table2"].frame
    lab = "thesis protocol: L*a*b* packed as 3 channels"
    for model, mark in (("pix2pix", "①"), ("pix2pix_class", "②"), ("pix2pix_wgan_class", "③")):
        rec = _record(project, model, "places205_10pct")
        rows = thesis[thesis[("", "configuration")] == f"{mark} {model}"]
        assert list(rows[("", "generator mode")]) == ["eval", "train, as the thesis"], model  # both modes
        assert list(rows[(lab, "PSNR↑")]) == [
            fmt("lab_psnr", rec.metrics["lab_psnr"]),
            fmt("lab_psnr", rec.metrics["lab_psnr_trainmode"]),
        ]
        assert "train mode" in rec.protocol["generator_mode"]
    assert md.count("| train, as the thesis |") == 3
    # the gray baseline under the thesis' protocol only where a thesis model is scored
    assert "lab_psnr" in _record(project, "gray", "places205_10pct").metrics
    assert not any(k.startswith("lab_") for k in _record(project, "gray", "imagenet_ctest10k").metrics)
    assert not any("n/a: not computed" in cell for t in tables.values() for cell in t.frame.to_numpy().ravel())


def test_open_choices_are_listed(paper_run) -> None:
    project, _ = paper_run
    md = (project / "reports" / "results.md").read_text()
    choices = md[md.index("### Open choices per table") : md.index("### Each record's protocol")]
    for title in ("Table 1 — PalGAN main table", "Table 2 — thesis", "Table 3 — ChromaGAN PSNR", "PalGAN CA ablation"):
        assert f"**{title}**" in choices
    assert "datasets.ilsvrc2012_val1k.file_list = " in choices and "models.pix2pix_wgan_class.n_critic = 5" in choices
    (teacher,) = _record(project, "chromagan", "ilsvrc2012_val1k").ours  # VGG16 or EfficientNet-Lite0: said so
    assert teacher.startswith("KL teacher: ")
    assert any("chromagan (trained model)" in line and line.endswith(teacher) for line in choices.splitlines())
    assert _record(project, "chromagan_no_class", "ilsvrc2012_val1k").ours == []  # no KL term: no teacher
