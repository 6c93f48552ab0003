"""The report stage: tables in the papers' layouts, figures, offline HTML, robustness to missing inputs.

The fixture evaluation tree (tests/fixtures/report/evaluation) holds one metrics.json per model per
evaluation set (``<model>/<set>/metrics.json``, the evaluate stage's layout). Sets: ``sample`` and
``imagenet_sample_holdout`` (no paper uses them), and four sets labelled with a paper's data set —
``imagenet_ctest10k`` (ImageNet ctest10k), ``coco_stuff`` (COCO-Stuff), ``ilsvrc1k`` (ILSVRC2012
(1,000 images)), ``places205_test`` (Places205 test). Every value differs from every other, so a cell
can be traced to the one record it came from. Also: an unavailable FID, a small-sample FID, the proxy
``fd_effnetlite0``, a model with no MLflow run (chromagan), one whose run id the store does not know
(pix2pix_class), one without samples (pix2pix_class), palettes stored as (N, 16, 16) and as (N, 256), and
the gray baseline on every set. Sample PNGs and a real MLflow SQLite store (losses, val/* and val_gray/*
curves, run parameters) are created here in tmp_path.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from chromapipe.config import ModelConfig, Params, ReportConfig, TrackingConfig
from chromapipe.metrics.record import MetricsRecord
from chromapipe.reporting import figures as figs
from chromapipe.reporting import published as pub
from chromapipe.reporting.evalsets import EvalIndex, set_label, set_name
from chromapipe.reporting.learning import learning_entries
from chromapipe.reporting.report import build_report, load_evaluations, load_runs
from chromapipe.reporting.tables import (
    MEASURED,
    NOT_EVALUATED,
    REPORTED,
    build_tables,
    chromagan_table,
    fmt,
    metric_label,
    palgan_main_table,
    thesis_table,
)

FIXTURE = Path(__file__).parent / "fixtures" / "report" / "evaluation"
EXPERIMENT = "chromapipe-report-test"
RUN_MODELS = {
    "pix2pix": True,
    "palgan": True,
    "palgan_no_ca": False,
    "pix2pix_wgan_class": True,
}  # model -> has history
TRAINED_ONLY = "pix2pix_wgan_class"  # trained (MLflow run, tagged) but not evaluated: still in the Learning section
SETS = ("sample", "imagenet_sample_holdout", "imagenet_ctest10k", "coco_stuff", "ilsvrc1k", "places205_test")
NO_SAMPLES = {"pix2pix_class"}  # the missing-input case
NUMBER = re.compile(r"\d+\.\d+")
BATCH = {"pix2pix": 2, "palgan": 4}
# validation curves logged to MLflow: model -> {metric: [(step, value)]}; val_gray/* once at step 0
VAL = {
    "pix2pix": {
        "psnr": [(10, 21.113), (20, 21.874), (30, 22.391), (48, 22.708)],
        "ssim": [(10, 0.8611), (20, 0.8702), (30, 0.8795), (48, 0.8833)],
        "lpips": [(10, 0.2811), (20, 0.2493), (30, 0.2302), (48, 0.2219)],
        "cf": [(10, 9.41), (48, 17.27)],
        "delta_cf": [(10, 20.33), (48, 12.47)],
    },
    "palgan": {"psnr": [(5, 20.517), (10, 21.262)], "lpips": [(5, 0.3017), (10, 0.2746)]},
    TRAINED_ONLY: {"psnr": [(25, 19.876)], "lpips": [(25, 0.3121)]},
}
VAL_GRAY = {"pix2pix": {"psnr": 21.559, "ssim": 0.8679, "lpips": 0.2674, "cf": 0.0, "delta_cf": 29.74}}  # palgan: none
RUN_PARAMS = {
    "pix2pix": {
        "model.batch_size": "2",
        "model.dataset": "imagenet_sample_train",
        "train.use_gpu": "True",
        "train.num_workers": "2",
        "train.validate_images": "16",
        "train.validate_every": "10",
        "data.source": "folder",
        "data.root": "/datasets/imagenet/train",
        "data.file_list": "lists/imagenet-sample-train.txt",
        "data_counts.train": "1200",
        "data_counts.val": "64",
        "data_counts.test": "0",
    },
    "palgan": {
        "model.batch_size": "4",
        "train.use_gpu": "False",
        "train.num_workers": "1",
        "train.validate_every": "5",
        "data.source": "sample",
        "data.root": "None",
        "data_counts.train": "24",
        "data_counts.val": "4",
    },
    TRAINED_ONLY: {"model.batch_size": "2", "data.source": "sample"},
    "palgan_no_ca": {
        "model.batch_size": "2",
        "train.use_gpu": "False",
        "train.num_workers": "1",
        "train.validate_every": "0",
        "data.source": "sample",
    },
}


def _png(path: Path, seed: int, gray: bool = False) -> None:
    rng = np.random.default_rng(seed)
    img = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
    if gray:
        img[:] = img.mean(axis=2, keepdims=True).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


def _make_store(root: Path) -> tuple[str, str, dict[str, str]]:
    """A real MLflow SQLite store with one run per model in RUN_MODELS; returns (uri, experiment id, run ids)."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment(EXPERIMENT, artifact_location=(root / "mlartifacts").as_uri())
    ids = {}
    now = int(time.time() * 1000)
    for model, history in RUN_MODELS.items():
        run = client.create_run(exp_id, tags={"chromapipe.model": model})
        rid = run.info.run_id
        client.log_batch(rid, params=[Param(k, v) for k, v in RUN_PARAMS[model].items()])
        if history:
            metrics = [
                Metric(key, value, now + step, step)
                for step in range(0, 50, 5)
                for key, value in (
                    ("train/g_total", 8.0 / (1 + step / 10)),
                    ("train/d_total", 0.7 + 0.1 * np.sin(step)),
                )
            ]
            metrics += [
                Metric(f"val/{m}", v, now + s, s) for m, points in VAL.get(model, {}).items() for s, v in points
            ]
            metrics += [Metric("val/seconds", 1.5, now + s, s) for s, _ in VAL.get(model, {}).get("psnr", [])]
            metrics += [Metric(f"val_gray/{m}", v, now, 0) for m, v in VAL_GRAY.get(model, {}).items()]
            client.log_batch(rid, metrics=metrics)
        client.set_terminated(rid)
        ids[model] = rid
    return uri, exp_id, ids


def _make_tree(root: Path, run_ids: dict[str, str]) -> None:
    shutil.copytree(FIXTURE, root / "evaluation")
    for path in (root / "evaluation").glob("*/*/metrics.json"):
        model = path.parent.parent.name
        if model in run_ids:
            path.write_text(path.read_text().replace("__RUN_ID__", run_ids[model]))
    for s, name in enumerate(SETS):
        for i in range(6):
            _png(root / "evaluation" / "gray" / name / "samples" / f"{i:03d}.png", 1000 * s + i, gray=True)
            _png(root / "evaluation" / "gray" / name / "ground_truth" / f"{i:03d}.png", 1000 * s + i)
        for k, model_dir in enumerate(sorted((root / "evaluation").iterdir())):
            if model_dir.name != "gray" and model_dir.name not in NO_SAMPLES and (model_dir / name).is_dir():
                for i in range(6):
                    _png(model_dir / name / "samples" / f"{i:03d}.png", 1000 * s + 100 * (k + 1) + i)


def _params(uri: str, samples: int = 3) -> Params:
    return Params(
        tracking=TrackingConfig(uri=uri, experiment=EXPERIMENT),
        report=ReportConfig(samples=samples),
        models={TRAINED_ONLY: ModelConfig(arch="pix2pix")},
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    uri, exp_id, ids = _make_store(root)
    _make_tree(root, ids)
    index = build_report(_params(uri), root)
    return {
        "root": root,
        "index": index,
        "exp_id": exp_id,
        "ids": ids,
        "uri": uri,
        "html": index.read_text(encoding="utf-8"),
    }


class _Page(HTMLParser):
    """Collects images, links, external resources and each table's rows (cell texts, row class, hrefs)."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.external: list[str] = []
        self.tables: dict[str, list[dict]] = {}
        self._section: str | None = None
        self._row: dict | None = None
        self._cell: list[str] | None = None
        self._in_head = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src", ""))
        for key in ("src", "href"):
            if tag in ("img", "script", "link", "iframe") and re.match(r"^(https?:)?//", a.get(key, "") or ""):
                self.external.append(a[key])
        if tag == "script" or (tag == "link" and a.get("rel") == "stylesheet"):
            self.external.append(f"<{tag}>")
        if tag == "section" and a.get("id"):
            self._section = a["id"]
        if tag == "thead":
            self._in_head = True
        if tag == "tr":
            self._row = {"class": a.get("class", ""), "cells": [], "hrefs": [], "head": self._in_head}
        if tag in ("td", "th"):
            self._cell = []
        if tag == "a" and self._row is not None:
            self._row["hrefs"].append(a.get("href"))

    def handle_endtag(self, tag):
        if tag == "thead":
            self._in_head = False
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row["cells"].append("".join(self._cell).strip())
            self._cell = None
        if tag == "tr" and self._row is not None:
            self.tables.setdefault(self._section or "", []).append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _page(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


def _evals(root: Path):
    return load_evaluations(root / "evaluation", [])


def test_published_numbers_transcribed():
    frame = pub.published_frame()
    assert set(frame.columns) >= {"paper", "table", "method", "dataset", "metric", "value", "protocol"}
    assert pub.value(pub.PALGAN_MAIN, "PalGAN ¹", "fid", "COCO-Stuff") == 7.70
    assert pub.value(pub.PALGAN_MAIN, "GPColor *", "psnr", "COCO-Stuff") is None
    assert pub.value(pub.THESIS_TABLE, "② GAN + L1 + Class", "psnr") == 27.324
    assert pub.value(pub.CHROMAGAN_PSNR, "ChromaGAN", "psnr") == 24.98
    assert pub.value(pub.PALGAN_CA, "no CA", "fid") == 9.90
    assert len(frame[frame.table == pub.PALGAN_MAIN]) == 10 * 3 * 4
    assert pub.paper_row("pix2pix_wgan_class", pub.THESIS_TABLE).startswith("③")
    assert pub.table_datasets(pub.PALGAN_MAIN) == ("ImageNet ctest10k", "ImageNet val50k", "COCO-Stuff")
    assert set(pub.DATASET_LABELS) == {
        "ImageNet ctest10k",
        "ImageNet val50k",
        "COCO-Stuff",
        "Places205 test",
        "ILSVRC2012 (1,000 images)",
    }


def test_records_are_read_per_model_and_set(built):
    evals = _evals(built["root"])
    assert len(evals) == 20
    keys = {(ev.name, set_name(ev)) for ev in evals}
    assert len(keys) == 20  # one record per (model, set); the set directory never becomes the model name
    assert {s for _, s in keys} == set(SETS)
    assert {ev.name for ev in evals} == {"gray", "palgan", "palgan_no_ca", "pix2pix", "pix2pix_class", "chromagan"}
    assert all(ev.is_baseline == (ev.name == "gray") for ev in evals)
    labels = {set_name(ev): set_label(ev) for ev in evals}
    assert labels["sample"] is None and labels["imagenet_sample_holdout"] is None
    assert labels["imagenet_ctest10k"] == "ImageNet ctest10k" and labels["ilsvrc1k"] == "ILSVRC2012 (1,000 images)"


def test_report_builds(built):
    out = built["index"].parent
    assert built["index"].name == "index.html" and (out / "results.md").is_file()
    expected = [f"comparison-{s}.png" for s in SETS] + ["palettes-sample.png", "palettes-coco_stuff.png"]
    expected += [
        "metrics.png",
        "training_curves.png",
        "learning-pix2pix.png",
        "learning-palgan.png",
        f"learning-{TRAINED_ONLY}.png",
    ]
    for name in expected:
        assert (out / "figures" / name).stat().st_size > 1000, name
    assert sorted(p.name for p in (out / "figures").iterdir()) == sorted(expected)  # nothing else, nothing stale
    metrics = pd.read_csv(out / "plots" / "metrics.csv")
    assert list(metrics.columns[:2]) == ["model", "set"] and "fd_effnetlite0" in metrics.columns
    assert len(metrics) == 20 and not metrics.duplicated(["model", "set"]).any()
    row = metrics[(metrics.model == "palgan") & (metrics.set == "coco_stuff")].iloc[0]
    assert row["psnr"] == pytest.approx(23.861)
    assert "train/g_total" in (out / "plots" / "training_losses.csv").read_text()
    md = (out / "results.md").read_text()
    assert (
        "Table 1" in md and "Table 2" in md and "Table 3" in md and "chromatic-attention" in md and "## Learning" in md
    )


def test_html_parses_offline_and_images_exist(built):
    page = _page(built["html"])
    assert page.images, "no figure referenced"
    for src in page.images:
        assert not src.startswith(("http:", "https:", "//", "/")), src
        assert (built["index"].parent / src).is_file(), src
    assert page.external == [], f"external resources in an offline page: {page.external}"
    for key in ("table1", "table2", "table3", "ca_ablation", "measured", "learning"):
        assert page.tables.get(key), f"table {key} missing from the HTML"
    assert "figures/learning-pix2pix.png" in page.images and "figures/comparison-imagenet_ctest10k.png" in page.images


# ---------------------------------------------------------------------- which record fills which cell

TABLE_METRICS = (
    "psnr",
    "ssim",
    "lpips",
    "fid",
    "fd_effnetlite0",
    "lab_psnr",
    "lab_ssim",
    "lab_lpips_vgg",
    "lab_fid",
)  # what the papers' tables show


def _origins(evals: list[MetricsRecord]) -> dict[str, set[tuple[str, str]]]:
    """Each formatted measured value of a paper-table metric -> the (model, set) records it can come from."""
    out: dict[str, set[tuple[str, str]]] = {}
    for ev in evals:
        for metric in TABLE_METRICS:
            if isinstance(value := ev.metrics.get(metric), float):
                out.setdefault(fmt(metric, value), set()).add((ev.name, set_name(ev)))
    return out


def _row_model(text: str, evals: list[MetricsRecord]) -> str:
    """The model a measured row names (``palgan (↔ PalGAN ¹)``, ``① pix2pix_class``, the gray baseline's label)."""
    text = re.sub(r"^[①②③] ", "", text)
    for ev in sorted(evals, key=lambda e: -len(e.label)):
        if text == ev.label or text.startswith(ev.label + " "):
            return ev.name
    raise AssertionError(f"no model in row label {text!r}")


def test_fixture_values_trace_to_one_record(built):
    """The premise of the provenance test below: each table value names exactly one (model, set) record."""
    evals = _evals(built["root"])
    origins = _origins(evals)
    assert len(origins) == sum(
        isinstance(ev.metrics.get(m), float) for ev in evals for m in TABLE_METRICS
    )  # all distinct
    assert all(len(o) == 1 for o in origins.values())


TABLE_LABELS = {
    "table1": None,
    "table2": "Places205 test",
    "table3": "ILSVRC2012 (1,000 images)",
    "ca_ablation": "COCO-Stuff",
}


def test_measured_cells_come_only_from_their_model_and_set(built):
    """Every number in a measured row of a paper's table is the row's model's number on the data set that the
    column group (Table 1) or the table states — never the same model's number on another set."""
    evals = _evals(built["root"])
    origins = _origins(evals)
    checked = 0
    for table in build_tables(evals, {}):
        if table.key not in TABLE_LABELS:
            continue
        label_col = next(c for c in table.frame.columns if c[1] in ("method", "configuration"))
        for kind, (_, row) in zip(table.kinds, table.frame.iterrows()):
            if kind != MEASURED:
                continue
            model = _row_model(row[label_col], evals)
            for col, cell in row.items():
                if col[1] in ("protocol", "run") or col[0] == "CA":
                    continue
                label = TABLE_LABELS[table.key] or col[0]
                numbers = [n for n in NUMBER.findall(cell) if n in origins]
                for n in numbers:
                    sets = {s for m, s in origins[n] if m == model}
                    assert sets, (table.key, model, col, cell)
                    assert {set_label(ev) for ev in evals if ev.name == model and set_name(ev) in sets} == {label}, (
                        table.key,
                        model,
                        col,
                        cell,
                    )
                    checked += 1
    assert checked > 30


def test_table1_cells(built):
    evals = _evals(built["root"])
    frame = palgan_main_table(evals, {}).frame
    method = frame[("", "method")]
    palgan = frame[method == "palgan (↔ PalGAN ¹)"].iloc[0]
    assert palgan[("ImageNet ctest10k", "PSNR↑")] == "23.42" and palgan[("COCO-Stuff", "PSNR↑")] == "23.86"
    assert palgan[("ImageNet ctest10k", "FID↓")] == "5.87 (n=10000)"  # 10,000 images: no small-sample warning
    assert palgan[("ImageNet val50k", "PSNR↑")] == NOT_EVALUATED  # no record on val50k
    assert "22.61" not in palgan.to_string() and "22.24" not in palgan.to_string()  # sample / hold-out numbers
    protocol = palgan[("", "protocol")]
    assert "imagenet_ctest10k [ImageNet ctest10k], test split, n=10000, 256² (resize)" in protocol
    assert "coco_stuff [COCO-Stuff], val split, n=5000" in protocol
    assert protocol.count("implementation: ") == 1 and "LPIPS lpips 0.1.4 (alex)" in protocol
    pix2pix = frame[method == "pix2pix"].iloc[0]  # measured on ctest10k, no PalGAN counterpart
    assert pix2pix[("ImageNet ctest10k", "PSNR↑")] == "22.58" and pix2pix[("COCO-Stuff", "PSNR↑")] == NOT_EVALUATED
    gray = frame[method == "gray input (ab = 0) baseline"].iloc[0]
    assert gray[("COCO-Stuff", "LPIPS↓")] == "0.256"
    assert not (method == "chromagan").any() and not (method == "pix2pix_class").any()  # never on these sets
    assert len(frame) == 10 + 4
    assert "N/A (not reported)" in frame[method == "GPColor *"].iloc[0][("COCO-Stuff", "FID↓")]


def test_single_set_tables_cells(built):
    evals = _evals(built["root"])
    thesis = thesis_table(evals, {})
    conf = thesis.frame[("", "configuration")]
    pix2pix_class = thesis.frame[conf == "② pix2pix_class"].iloc[0]
    srgb, lab = "this run's protocol: sRGB uint8", "thesis protocol: L*a*b* packed as 3 channels"
    assert pix2pix_class[(srgb, "PSNR↑")] == "24.32"
    # the thesis' own protocol: beside its reported numbers, never in the sRGB columns
    assert pix2pix_class[(lab, "PSNR↑")] == "26.871" and pix2pix_class[(lab, "FID↓")].startswith("3.115 (n=2379)")
    reported = thesis.frame[conf == "② GAN + L1 + Class"].iloc[0]
    assert reported[(lab, "PSNR↑")] == "27.324" and reported[(srgb, "PSNR↑")] == NOT_EVALUATED
    gray = thesis.frame[conf == "gray input (ab = 0) baseline"]
    assert gray.iloc[0][(lab, "PSNR↑")] == NOT_EVALUATED  # this record was not scored under the thesis' protocol
    assert gray.iloc[0][("", "generator mode")] == "— (no network)"
    assert not conf.str.contains("① pix2pix").any()  # pix2pix has no Places205 record: no measured row
    assert "pix2pix (↔ ① GAN + L1): evaluated only on" in thesis.caption
    chroma = chromagan_table(evals, {}).frame
    by_method = dict(zip(chroma[("", "method")], chroma[("", "PSNR (dB)↑")]))
    assert (
        by_method["chromagan (↔ ChromaGAN)"] == "23.76" and by_method["pix2pix (↔ Isola et al. (pix2pix))"] == "22.89"
    )
    assert by_method["gray input (ab = 0) baseline"] == "21.88"
    assert "23.05" not in chroma.to_string()  # chromagan's sample-set PSNR
    ca = {t.key: t for t in build_tables(evals, {})}["ca_ablation"].frame
    rows = ca[ca[("", "source")] == "measured (this run)"]
    assert dict(zip(rows[("", "method")], rows[("metrics", "PSNR↑")])) == {"palgan_no_ca": "22.17", "palgan": "23.86"}


def test_unlabelled_and_mislabelled_sets_never_fill_a_paper_cell():
    """In-memory records: only the record whose dataset_label is exactly the column's data set fills it."""

    def rec(name, dataset, label, psnr):
        return MetricsRecord(
            name,
            arch="palgan",
            run_id="r",
            metrics={"psnr": psnr},
            protocol={"dataset": dataset, "dataset_label": label, "split": "test", "n_images": 10},
        )

    evals = [
        rec("palgan", "ours", None, 20.111),
        rec("palgan", "typo", "Imagenet ctest10k", 20.222),
        rec("palgan", "ctest", "ImageNet ctest10k", 20.333),
        rec("palgan", "ctest_again", "ImageNet ctest10k", 20.444),
    ]
    index = EvalIndex(evals)
    assert index.cell("palgan", "ImageNet ctest10k") is evals[2] and index.duplicates  # second claim is noted, unused
    text = palgan_main_table(index, {}).frame.to_string()
    assert "20.33" in text and not {"20.11", "20.22", "20.44"} & set(NUMBER.findall(text))
    measured = {t.key: t for t in build_tables(index, {})}["measured"].frame
    assert set(measured[("", "evaluation set")]) == {"ours", "typo", "ctest", "ctest_again"}
    only_unlabelled = [rec("palgan", "ours", None, 20.111)]
    table = palgan_main_table(only_unlabelled, {})
    assert table.kinds.count(MEASURED) == 0 and "No model was evaluated on" in table.caption
    # the set's name: protocol.dataset, else the per-set directory's name; never the model's directory
    assert set_name(MetricsRecord("palgan", path=Path("/e/palgan/holdout"))) == "holdout"
    assert set_name(MetricsRecord("palgan", path=Path("/e/palgan"))) == "unnamed set"
    assert set_label(MetricsRecord("palgan", protocol={"dataset_label": "ImageNet ctest10K"})) is None


def _fid_columns(table) -> list:
    return [c for c in table.frame.columns if c[1].startswith("FID")]


def test_table1_fid_column_never_holds_the_proxy(built):
    evals = _evals(built["root"])
    table = palgan_main_table(evals, {})
    proxies = {f"{ev.metrics['fd_effnetlite0']:.2f}" for ev in evals}
    fid_cols = _fid_columns(table)
    assert [c[0] for c in fid_cols] == list(pub.table_datasets(pub.PALGAN_MAIN))
    for col in fid_cols:
        for cell in table.frame[col]:
            assert not set(NUMBER.findall(cell)) & proxies, f"proxy value in FID column {col}: {cell}"
    proxy_cols = [c for c in table.frame.columns if "proxy" in c[1]]
    assert {c[0] for c in proxy_cols} == {"ImageNet ctest10k", "COCO-Stuff"}
    assert all("FID" not in c[1].split("(")[0] for c in proxy_cols)
    assert table.frame[proxy_cols[0]].str.contains("3.42 \\(n=10000\\)").any()
    rows = _page(built["html"]).tables["table1"]
    header = [r for r in rows if r["head"]][-1]["cells"]
    fid_idx = [i for i, name in enumerate(header) if name.startswith("FID")]
    assert len(fid_idx) == 3
    for row in (r for r in rows if not r["head"]):
        for i in fid_idx:
            assert not set(NUMBER.findall(row["cells"][i])) & proxies


def test_unavailable_and_small_sample_fid_are_labelled(built):
    evals = _evals(built["root"])
    table = {t.key: t for t in build_tables(evals, {})}["measured"]
    frame = table.frame
    fid_col = ("metrics", metric_label("fid"))
    row = lambda model, s: frame[(frame[("", "model")] == model) & (frame[("", "evaluation set")] == s)].iloc[0]  # noqa: E731
    assert row("pix2pix", "sample")[fid_col].startswith("n/a: Inception weights")
    assert any("torch-fidelity cannot download them offline" in note for note in table.footnotes)
    assert row("pix2pix_class", "sample")[fid_col].startswith("143.28 (n=8) ⚠")
    assert row("pix2pix_class", "places205_test")[fid_col] == "7.95 (n=2379)"
    assert any("2,048" in note for note in table.footnotes)
    assert "n/a: Inception weights" in built["html"]
    assert row("palgan", "imagenet_sample_holdout")[("", "papers' name")].startswith("—")
    assert "imagenet_sample_holdout, test split, n=48" in row("palgan", "imagenet_sample_holdout")[("", "protocol")]


def test_reported_and_measured_never_share_a_cell(built):
    evals = _evals(built["root"])
    values = [r for r in pub.published_records() if r.value is not None]
    published = {fmt(r.metric, r.value) for r in values} | {fmt(r.metric, r.value, 3) for r in values}
    measured = {fmt(k, v) for ev in evals for k, v in ev.metrics.items() if isinstance(v, float)}
    assert not published & measured, "fixture values must be distinguishable from published ones"
    for table in build_tables(evals, {}):
        assert len(table.kinds) == len(table.frame)
        for kind, (_, row) in zip(table.kinds, table.frame.iterrows()):
            source = row.get(("", "source"))
            if source is not None:
                assert source.startswith(kind), (table.key, source)
            for cell in row:
                numbers = set(NUMBER.findall(cell))
                assert not (numbers & published and numbers & measured), (table.key, cell)
                if kind == REPORTED:
                    assert not numbers & measured, (table.key, cell)
                if kind == MEASURED:
                    assert not numbers & published, (table.key, cell)
    rows = _page(built["html"]).tables["table1"]
    body = [r for r in rows if not r["head"]]
    assert {r["class"] for r in body} == {REPORTED, MEASURED}


def test_run_links_and_missing_runs(built):
    rows = [r for r in _page(built["html"]).tables["measured"] if not r["head"]]
    by_model = {(r["cells"][2], r["cells"][0]): r for r in rows}  # (model, set)
    assert len(by_model) == 20
    for model, run_id in built["ids"].items():
        url = f"http://127.0.0.1:5000/#/experiments/{built['exp_id']}/runs/{run_id}"
        for (m, _), row in by_model.items():
            if m == model:
                assert url in row["hrefs"] and run_id in row["cells"], model
    assert by_model[("chromagan", "ilsvrc1k")]["hrefs"] == []  # no MLflow run: row kept, no link
    assert by_model[("pix2pix_class", "sample")]["hrefs"] == []  # run id not in the store
    html = built["html"]
    assert "no MLflow run: metrics.json has no run_id" in html
    assert "0123456789abcdef0123456789abcdef is not in the MLflow store" in html
    assert "pix2pix_class on sample: no sample PNGs" in html and "palettes.npz not found" in html


# ---------------------------------------------------------------------- learning


def test_learning_curves_from_mlflow(built):
    """val/* and val_gray/* logged with MlflowClient reach the CSV, the figure (line data) and the page."""
    out = built["index"].parent
    csv = pd.read_csv(out / "plots" / "validation.csv")
    assert list(csv.columns) == ["model", "metric", "step", "value"]
    expected = [(m, f"val/{k}", s, v) for m, curves in VAL.items() for k, pts in curves.items() for s, v in pts]
    expected += [(m, f"val_gray/{k}", 0, v) for m, ref in VAL_GRAY.items() for k, v in ref.items()]
    got = {(r.model, r.metric, int(r.step)): r.value for r in csv.itertuples()}
    assert len(got) == len(expected) and not csv["metric"].str.endswith("seconds").any()
    for model, metric, step, value in expected:
        assert got[(model, metric, step)] == pytest.approx(value), (model, metric, step)

    evals = _evals(built["root"])
    runs = load_runs(built["uri"], EXPERIMENT, evals, [])
    entries = {e.model: e for e in learning_entries(runs, evals)}
    assert set(entries) == {"pix2pix", "palgan"}  # palgan_no_ca: no val/* (see the missing list)
    pix = entries["pix2pix"]
    assert pix.steps == 48 and pix.images_seen == 48 * BATCH["pix2pix"]
    assert pix.training_data.startswith(
        "imagenet_sample_train: folder, root=/datasets/imagenet/train, file_list=lists/imagenet-sample-train.txt"
    )
    assert "(train 1,200 / val 64 / test 0 images)" in pix.training_data
    assert "2 Ray worker(s), GPU" in pix.hardware and "evaluated on cuda:0, cpu" in pix.hardware
    fig = figs.validation_figure(pix.title, pix.caption(), pix.panels())
    axes = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    assert set(axes) == {"PSNR↑", "SSIM↑", "LPIPS↓", "CF", "ΔCF↓"}
    for metric, label in (("psnr", "PSNR↑"), ("lpips", "LPIPS↓")):
        curve, reference = axes[label].get_lines()
        assert list(curve.get_xdata()) == [s for s, _ in VAL["pix2pix"][metric]]
        assert list(curve.get_ydata()) == pytest.approx([v for _, v in VAL["pix2pix"][metric]])
        assert list(reference.get_ydata()) == pytest.approx([VAL_GRAY["pix2pix"][metric]] * 2)
    assert "96 images seen" in fig.texts[0].get_text().replace(
        "\n", " "
    ) or "96 images seen" in fig._suptitle.get_text().replace("\n", " ")
    pal = entries["palgan"]
    assert pal.steps == 45 and pal.images_seen == 45 * BATCH["palgan"] and "1 Ray worker(s), CPU" in pal.hardware
    assert [len(ax.get_lines()) for ax in figs.validation_figure(pal.title, pal.caption(), pal.panels()).axes] == [1, 1]

    rows = [r for r in _page(built["html"]).tables["learning"] if not r["head"]]
    cells = {r["cells"][0]: r["cells"] for r in rows}
    assert set(cells) == {
        "pix2pix",
        "palgan",
        TRAINED_ONLY,
    }  # a model of params.yaml not evaluated yet: by its run's tag
    assert cells[TRAINED_ONLY][3] == "45" and cells[TRAINED_ONLY][4] == "90"  # last step of any history (losses here)
    assert cells["pix2pix"][3] == "48" and cells["pix2pix"][4] == "96" and "PSNR 22.71 (21.56)" in cells["pix2pix"][6]
    html = built["html"]
    assert f"MLflow run {built['ids']['palgan_no_ca']} has no val/* metrics (validation was off" in html
    assert f"MLflow run {built['ids']['palgan']} has val/* but no val_gray/*" in html


def test_report_builds_with_inputs_missing(tmp_path):
    """Old flat layout (``<model>/metrics.json``), a broken record, no store, no baseline, no samples."""
    root = tmp_path
    (root / "evaluation" / "pix2pix").mkdir(parents=True)
    shutil.copy(FIXTURE / "pix2pix" / "sample" / "metrics.json", root / "evaluation" / "pix2pix" / "metrics.json")
    (root / "evaluation" / "broken").mkdir()
    (root / "evaluation" / "broken" / "metrics.json").write_text("{not json")
    (root / "evaluation" / "palgan" / "holdout").mkdir(parents=True)  # per-set layout, no protocol.dataset
    (root / "evaluation" / "palgan" / "holdout" / "metrics.json").write_text(
        '{"arch": "palgan", "metrics": {"psnr": 20.5}}'
    )
    shutil.copy(
        FIXTURE / "palgan" / "sample" / "metrics.json", root / "evaluation" / "palgan" / "metrics.json"
    )  # stale flat
    store = root / "nowhere" / "mlflow.db"
    index = build_report(_params(f"sqlite:///{store}"), root)
    html = index.read_text()
    assert not store.exists() and not store.parent.exists(), "the report must not create an MLflow store"
    assert "MLflow store not found" in html and "No gray baseline on sample" in html and "broken" in html
    assert "No sample PNGs at all" in html and "No model has validation curves" in html
    page = _page(html)
    assert all((index.parent / s).is_file() for s in page.images)
    assert page.tables["table1"]
    measured = [r for r in page.tables["measured"] if not r["head"]]
    assert [(r["cells"][0], r["cells"][2]) for r in measured] == [("holdout", "palgan"), ("sample", "pix2pix")]
    assert (
        "old flat-layout record beside palgan's per-set results; ignored" in (index.parent / "results.md").read_text()
    )
    assert (index.parent / "plots" / "validation.csv").read_text().strip() == "model,metric,step,value"


def _chromium() -> str | None:
    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


def test_page_renders_in_headless_chromium(built, tmp_path):
    binary = _chromium()
    if binary is None:
        pytest.skip("no chromium binary on PATH (Debian: apt-get install -y chromium)")
    flags = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    url = built["index"].resolve().as_uri()
    result = subprocess.run(flags + ["--dump-dom", url], capture_output=True, text=True, timeout=60)
    dom = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    assert dom.count("<table") >= 5
    for text in (
        "Table 1 — PalGAN main table layout",
        "PalGAN ¹",
        "24.19",
        "23.42",
        "21.34",
        "Table 2 — thesis",
        "27.324",
        "Table 3 — ChromaGAN PSNR",
        "24.98",
        "chromatic-attention",
        "FD-effnetlite0↓ (proxy, not FID)",
        "Learning",
        "val_gray",
    ):
        assert text in dom, text
    shot = tmp_path / "page.png"
    subprocess.run(flags + ["--window-size=1400,2000", f"--screenshot={shot}", url], capture_output=True, timeout=60)
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_fid_cell_rules():
    from chromapipe.metrics.record import MetricsRecord
    from chromapipe.reporting.tables import Footnotes, measured_cell, metric_label, short_reason

    notes = Footnotes()
    big = MetricsRecord("m", protocol={"n_images": 5000}, metrics={"fid": 12.345, "fd_effnetlite0": 3.5})
    assert measured_cell(big, "fid", notes) == "12.35 (n=5000)" and not notes.items
    small = MetricsRecord("m", protocol={"n_images": 100}, metrics={"fid": 80.0}, details={"fid": {"n_samples": 90}})
    assert measured_cell(small, "fid", notes).startswith("80.00 (n=90) ⚠ [1]")
    assert measured_cell(MetricsRecord("m"), "lpips", notes).startswith("n/a: not computed")
    assert "FID" not in metric_label("fd_effnetlite0").split("(")[0] and "proxy" in metric_label("fd_effnetlite0")
    assert (
        short_reason("Inception weights pt_inception-2015-12-05 not found locally; more")
        == "Inception weights not found locally"
    )
