"""The report stage: tables in the papers' layouts, figures, offline HTML, robustness to missing inputs.

The fixture evaluation tree (tests/fixtures/report/evaluation) holds metrics.json files in the
ARCHITECTURE.md format: an unavailable FID, a small-sample FID, the proxy ``fd_effnetlite0``, a model
with no MLflow run (chromagan), one whose run id the store does not know (pix2pix_class), one without
samples (pix2pix_class), one without palettes (palgan_no_ca), and the gray baseline. Sample PNGs and a
real MLflow SQLite store are created here in tmp_path.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from chromapipe.config import EvaluateConfig, Params, ReportConfig, TrackingConfig
from chromapipe.reporting import published as pub
from chromapipe.reporting.report import build_report, load_evaluations
from chromapipe.reporting.tables import MEASURED, REPORTED, build_tables, fmt, palgan_main_table

FIXTURE = Path(__file__).parent / "fixtures" / "report" / "evaluation"
EXPERIMENT = "chromapipe-report-test"
RUN_MODELS = {"pix2pix": True, "palgan": True, "palgan_no_ca": False}  # model -> has loss history
WITH_SAMPLES = ("pix2pix", "chromagan", "palgan", "palgan_no_ca")  # pix2pix_class: none (missing-input case)
NUMBER = re.compile(r"\d+\.\d+")


def _png(path: Path, seed: int, gray: bool = False) -> None:
    rng = np.random.default_rng(seed)
    img = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
    if gray:
        img[:] = img.mean(axis=2, keepdims=True).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


def _make_store(root: Path) -> tuple[str, str, dict[str, str]]:
    """A real MLflow SQLite store with one run per model in RUN_MODELS; returns (uri, experiment id, run ids)."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment(EXPERIMENT, artifact_location=(root / "mlartifacts").as_uri())
    ids = {}
    now = int(time.time() * 1000)
    for model, history in RUN_MODELS.items():
        run = client.create_run(exp_id, tags={"chromapipe.model": model})
        if history:
            metrics = [Metric(key, value, now + step, step) for step in range(0, 50, 5)
                       for key, value in (("train/g_total", 8.0 / (1 + step / 10)), ("train/d_total", 0.7 + 0.1 * np.sin(step)))]
            client.log_batch(run.info.run_id, metrics=metrics)
        client.set_terminated(run.info.run_id)
        ids[model] = run.info.run_id
    return uri, exp_id, ids


def _make_tree(root: Path, run_ids: dict[str, str]) -> None:
    shutil.copytree(FIXTURE, root / "evaluation")
    for model, run_id in run_ids.items():
        path = root / "evaluation" / model / "metrics.json"
        path.write_text(path.read_text().replace("__RUN_ID__", run_id))
    for i in range(6):
        _png(root / "evaluation" / "gray" / "samples" / f"{i:03d}.png", i, gray=True)
        _png(root / "evaluation" / "gray" / "ground_truth" / f"{i:03d}.png", i)
        for k, model in enumerate(WITH_SAMPLES):
            _png(root / "evaluation" / model / "samples" / f"{i:03d}.png", 100 * k + i)


def _params(uri: str, samples: int = 4) -> Params:
    return Params(tracking=TrackingConfig(uri=uri, experiment=EXPERIMENT), evaluate=EvaluateConfig(out="evaluation"),
                  report=ReportConfig(out="reports", samples=samples))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    uri, exp_id, ids = _make_store(root)
    _make_tree(root, ids)
    index = build_report(_params(uri), root)
    return {"root": root, "index": index, "exp_id": exp_id, "ids": ids, "html": index.read_text(encoding="utf-8")}


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


def test_report_builds(built):
    out = built["index"].parent
    assert built["index"].name == "index.html" and (out / "results.md").is_file()
    for name in ("comparison.png", "palettes.png", "training_curves.png", "metrics.png"):
        assert (out / "figures" / name).stat().st_size > 1000, name
    metrics_csv = (out / "plots" / "metrics.csv").read_text()
    assert "fd_effnetlite0" in metrics_csv and "palgan" in metrics_csv
    assert "train/g_total" in (out / "plots" / "training_losses.csv").read_text()
    md = (out / "results.md").read_text()
    assert "Table 1" in md and "Table 2" in md and "Table 3" in md and "chromatic-attention" in md


def test_html_parses_offline_and_images_exist(built):
    page = _page(built["html"])
    assert page.images, "no figure referenced"
    for src in page.images:
        assert not src.startswith(("http:", "https:", "//", "/")), src
        assert (built["index"].parent / src).is_file(), src
    assert page.external == [], f"external resources in an offline page: {page.external}"
    for key in ("table1", "table2", "table3", "ca_ablation", "measured"):
        assert page.tables.get(key), f"table {key} missing from the HTML"


def _fid_columns(table) -> list:
    return [c for c in table.frame.columns if c[1].startswith("FID")]


def test_table1_fid_column_never_holds_the_proxy(built):
    evals = _evals(built["root"])
    table = palgan_main_table(evals, {})
    proxies = {f"{ev.metrics['fd_effnetlite0']:.2f}" for ev in evals}
    fid_cols = _fid_columns(table)
    assert len(fid_cols) == 4  # three paper datasets + this run's
    for col in fid_cols:
        for cell in table.frame[col]:
            assert not set(NUMBER.findall(cell)) & proxies, f"proxy value in FID column {col}: {cell}"
    proxy_cols = [c for c in table.frame.columns if "proxy" in c[1]]
    assert proxy_cols and "FID" not in proxy_cols[0][1].split("(")[0]
    assert proxies <= {n for cell in table.frame[proxy_cols[0]] for n in NUMBER.findall(cell)}
    # the same in the rendered page: find the FID header positions in table1's second header row
    rows = _page(built["html"]).tables["table1"]
    header = [r for r in rows if r["head"]][-1]["cells"]
    fid_idx = [i for i, name in enumerate(header) if name.startswith("FID")]
    assert len(fid_idx) == 4
    for row in (r for r in rows if not r["head"]):
        for i in fid_idx:
            assert not set(NUMBER.findall(row["cells"][i])) & proxies


def test_unavailable_and_small_sample_fid_are_labelled(built):
    evals = _evals(built["root"])
    table = palgan_main_table(evals, {})
    frame = table.frame
    method = frame[("", "method")]
    fid_col = _fid_columns(table)[-1]
    pix2pix = frame[method.str.startswith("pix2pix ")].iloc[0] if (method.str.startswith("pix2pix ")).any() else frame[method == "pix2pix"].iloc[0]
    assert pix2pix[fid_col].startswith("n/a: Inception weights")
    assert any("torch-fidelity cannot download them offline" in note for note in table.footnotes)
    with_fid = frame[method == "pix2pix_class"].iloc[0][fid_col]
    assert with_fid.startswith("143.28 (n=8) ⚠")
    assert any("2,048" in note for note in table.footnotes)
    assert "N/A (not reported)" in frame[method == "GPColor *"].iloc[0][("COCO-Stuff", "FID↓")]
    assert "n/a: Inception weights" in built["html"]


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
    by_model = {r["cells"][0]: r for r in rows}
    for model, run_id in built["ids"].items():
        url = f"http://127.0.0.1:5000/#/experiments/{built['exp_id']}/runs/{run_id}"
        assert url in by_model[model]["hrefs"], model
        assert run_id in by_model[model]["cells"]
    assert by_model["chromagan"]["hrefs"] == []  # no MLflow run: row kept, no link
    assert by_model["pix2pix_class"]["hrefs"] == []  # run id not in the store
    html = built["html"]
    assert "no MLflow run: metrics.json has no run_id" in html
    assert "0123456789abcdef0123456789abcdef is not in the MLflow store" in html
    assert "pix2pix_class: no sample PNGs" in html and "palgan_no_ca" in html and "palettes.npz not found" in html


def test_report_builds_with_inputs_missing(tmp_path):
    root = tmp_path
    (root / "evaluation" / "pix2pix").mkdir(parents=True)
    shutil.copy(FIXTURE / "pix2pix" / "metrics.json", root / "evaluation" / "pix2pix" / "metrics.json")
    (root / "evaluation" / "broken").mkdir()
    (root / "evaluation" / "broken" / "metrics.json").write_text("{not json")
    store = root / "nowhere" / "mlflow.db"
    index = build_report(_params(f"sqlite:///{store}"), root)
    html = index.read_text()
    assert not store.exists() and not store.parent.exists(), "the report must not create an MLflow store"
    assert "MLflow store not found" in html and "No gray baseline" in html and "broken" in html
    assert "No sample PNGs at all" in html
    page = _page(html)
    assert all((index.parent / s).is_file() for s in page.images)
    assert page.tables["table1"]


def _chromium() -> str | None:
    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


def test_page_renders_in_headless_chromium(built, tmp_path):
    binary = _chromium()
    if binary is None:
        pytest.skip("no chromium binary on PATH (Debian: apt-get install -y chromium)")
    flags = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    url = built["index"].resolve().as_uri()
    result = subprocess.run(flags + ["--dump-dom", url], capture_output=True, text=True, timeout=60)
    dom = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    assert dom.count("<table") >= 5
    for text in ("Table 1 — PalGAN main table layout", "PalGAN ¹", "24.19", "21.34", "Table 2 — thesis",
                 "27.324", "Table 3 — ChromaGAN PSNR", "24.98", "chromatic-attention", "FD-effnetlite0↓ (proxy, not FID)"):
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
    assert short_reason("Inception weights pt_inception-2015-12-05 not found locally; more") == "Inception weights not found locally"
