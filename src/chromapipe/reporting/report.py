"""``build_report``: regenerate the whole report from evaluation outputs and the MLflow store alone.

The report stage never retrains or re-evaluates: it reads ``<eval dir>/*/metrics.json`` (the gray
baseline included), the sample PNGs and PalGAN palettes the evaluate stage saved, and the MLflow run of
each model (link + loss history). Each input may be absent — a model evaluated without samples, a store
that was deleted, a run id the store does not know — and the report still builds and lists, in a
"What is missing" section, exactly what it could not include and why.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from chromapipe.config import Params, load_params, project_root, tracking_uri
from chromapipe.reporting import figures as figs
from chromapipe.reporting.render import FigureRef, ReportData, RunInfo, write_report
from chromapipe.metrics.record import MetricsRecord
from chromapipe.reporting.tables import build_tables, metric_label, metrics_long, protocol_text

log = logging.getLogger(__name__)

LOSS_KEYS = ("train/g_total", "train/d_total")
FIGURE_FILES = ("comparison.png", "palettes.png", "training_curves.png", "metrics.png")
PALETTE_SHAPE = (16, 16)


def _under(root: Path, path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else root / p


def evaluation_dir(params: Params, root: Path) -> Path:
    """Where the evaluate stage wrote ``<model>/metrics.json``."""
    return _under(root, params.evaluate.out)


def load_evaluations(eval_dir: Path, missing: list[str]) -> list[MetricsRecord]:
    """Parse every ``*/metrics.json``; a malformed file is skipped and reported, not fatal."""
    evals = []
    for path in sorted(eval_dir.glob("*/metrics.json")):
        try:
            evals.append(MetricsRecord.read(path.parent))
        except (OSError, ValueError) as exc:
            missing.append(f"{path}: unreadable ({exc}); model {path.parent.name} left out of the report.")
    if not evals:
        missing.append(f"No evaluation results: no */metrics.json under {eval_dir}. Run the evaluate stage first.")
    elif not any(ev.is_baseline for ev in evals):
        missing.append(f"No gray baseline: {eval_dir / 'gray' / 'metrics.json'} not found.")
    return evals


# ---------------------------------------------------------------------- MLflow

def _sqlite_file(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):].split("?")[0])


def load_runs(uri: str, experiment_name: str, evals: list[MetricsRecord], missing: list[str]) -> dict[str, RunInfo]:
    """Each evaluated model's MLflow run and loss history; models without one keep a RunInfo saying why."""
    runs = {ev.name: RunInfo(ev.name, ev.run_id) for ev in evals}
    db = _sqlite_file(uri)
    if db is not None and not db.is_file():  # never let MlflowClient create an empty store as a side effect
        missing.append(f"MLflow store not found ({uri}): no run links and no training curves.")
        for run in runs.values():
            run.note = "MLflow store not found"
        return runs
    if uri.startswith("http"):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name(experiment_name)
    except Exception as exc:  # noqa: BLE001 - any store failure must leave the report buildable
        missing.append(f"MLflow store {uri} could not be opened ({type(exc).__name__}: {exc}): no run links or curves.")
        for run in runs.values():
            run.note = "MLflow store could not be opened"
        return runs
    for ev in evals:
        run = runs[ev.name]
        if ev.is_baseline and not ev.run_id:
            run.note = "baseline: no training run"
            continue
        try:
            _fill_run(client, experiment, ev, run)
        except Exception as exc:  # noqa: BLE001
            run.note = f"MLflow error: {type(exc).__name__}: {exc}"
        if run.note and not run.note.startswith("run id not in metrics.json; found"):
            missing.append(f"{ev.name}: {run.note}.")
    return runs


def _fill_run(client, experiment, ev: MetricsRecord, run: RunInfo) -> None:
    from mlflow.exceptions import MlflowException

    if not run.run_id:
        found = []
        if experiment is not None:
            found = client.search_runs([experiment.experiment_id], filter_string=f"tags.`chromapipe.model` = '{ev.name}'",
                                       order_by=["attributes.start_time DESC"], max_results=1)
        if not found:
            run.note = "no MLflow run: metrics.json has no run_id and no run is tagged with this model"
            return
        run.run_id = found[0].info.run_id
        run.note = "run id not in metrics.json; found by the chromapipe.model tag (latest run)"
    try:
        info = client.get_run(run.run_id).info
    except MlflowException:
        run.note = f"run {run.run_id} is not in the MLflow store: no link, no training curves"
        return
    run.experiment_id, run.status = info.experiment_id, info.status
    rows = [{"key": key, "step": m.step, "value": m.value} for key in LOSS_KEYS for m in client.get_metric_history(run.run_id, key)]
    run.history = pd.DataFrame(rows, columns=["key", "step", "value"])
    if run.history.empty:
        run.note = (run.note + "; " if run.note else "") + "run has no train/g_total or train/d_total history"


# ---------------------------------------------------------------------- samples and palettes

def _pngs(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(folder.glob("*.png"))} if folder.is_dir() else {}


def comparison_columns(eval_dir: Path, evals: list[MetricsRecord], n: int, missing: list[str]) -> tuple[list[tuple[str, dict[str, Path]]], list[str]]:
    """Grid columns (gray input, ground truth, each model) and the first ``n`` sample names."""
    gray = _pngs(eval_dir / "gray" / "samples")
    truth = _pngs(eval_dir / "gray" / "ground_truth")
    if not gray:
        missing.append(f"Gray inputs {eval_dir / 'gray' / 'samples'}/*.png not found: grid shows placeholders.")
    if not truth:
        missing.append(f"Ground truth {eval_dir / 'gray' / 'ground_truth'}/*.png not found: grid shows placeholders.")
    columns = [("gray input", gray), ("ground truth", truth)]
    for ev in evals:
        if ev.is_baseline:
            continue
        files = _pngs(eval_dir / ev.name / "samples")
        if not files:
            missing.append(f"{ev.name}: no sample PNGs in {eval_dir / ev.name / 'samples'}.")
        columns.append((ev.name, files))
    names = sorted(set(truth) | set(gray)) or sorted({name for _, files in columns for name in files})
    return columns, names[:n]


def load_palettes(eval_dir: Path, evals: list[MetricsRecord], missing: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """``palettes.npz`` (pred, gt: (N,16,16) or (N,256)) of each PalGAN-family model; bad or absent files noted."""
    out = {}
    for ev in evals:
        if not (ev.arch == "palgan" or ev.name.startswith("palgan")):
            continue
        path = eval_dir / ev.name / "palettes.npz"
        if not path.is_file():
            missing.append(f"{ev.name}: {path} not found: no palette figure for it.")
            continue
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: np.asarray(z[k], dtype=float).reshape(len(z[k]), *PALETTE_SHAPE) for k in ("pred", "gt")}
        except (OSError, KeyError, ValueError) as exc:
            missing.append(f"{ev.name}: {path} unusable ({type(exc).__name__}: {exc}).")
            continue
        out[ev.name] = arrays
    return out


# ---------------------------------------------------------------------- assembly

def _bar_metrics(long: pd.DataFrame) -> list[tuple[str, str]]:
    keys = ["psnr", "ssim", "lpips", "fid"] + sorted(k for k in long["metric"].unique() if k.startswith("fd_")) + ["delta_cf", "cf"]
    return [(k, metric_label(k)) for k in keys]


def _plots(evals: list[MetricsRecord], runs: dict[str, RunInfo]) -> dict[str, pd.DataFrame]:
    long = metrics_long(evals)
    wide = pd.DataFrame(columns=["model"])
    if not long.empty:
        wide = long.pivot_table(index="model", columns="metric", values="value", sort=False)
        order = [k for k, _ in _bar_metrics(long) if k in wide.columns and k != "cf"] + ["cf", "cf_gt"]
        wide = wide[[k for k in order if k in wide.columns] + sorted(set(wide.columns) - set(order))].reset_index()
    hist = [h.assign(model=m) for m, r in runs.items() if not (h := r.history).empty]
    losses = pd.concat(hist, ignore_index=True)[["model", "key", "step", "value"]] if hist else pd.DataFrame(columns=["model", "key", "step", "value"])
    return {"metrics.csv": wide, "training_losses.csv": losses}


def build_report(params: Params, root: Path, tracking: str | None = None) -> Path:
    """Build ``<root>/<report.out>/`` (index.html, results.md, figures/, plots/) and return index.html's path.

    Reads ``<eval dir>/*/metrics.json`` (eval dir: ``evaluate.out`` if it has results, else ``evaluation/``),
    ``<eval dir>/gray/{samples,ground_truth}/*.png``, ``<eval dir>/<model>/samples/*.png``,
    ``<eval dir>/<palgan model>/palettes.npz`` and the MLflow store ``tracking`` (default: ``tracking.uri``,
    else the workspace's ``mlflow.db``).
    """
    root = Path(root).resolve()
    tracking = tracking or tracking_uri(params)
    out = _under(root, params.report.out)
    fig_dir = out / "figures"
    missing: list[str] = []
    eval_dir = evaluation_dir(params, root)
    evals = load_evaluations(eval_dir, missing)
    not_evaluated = sorted(set(params.models) - {ev.name for ev in evals})
    if not_evaluated:
        missing.append("Models in params.yaml without evaluation results: " + ", ".join(not_evaluated) + ".")
    runs = load_runs(tracking, params.tracking.experiment, evals, missing)
    links = {m: (r.run_id or "no run", r.url) for m, r in runs.items()}
    tables = build_tables(evals, links)

    figures: list[FigureRef] = []
    produced: set[str] = set()

    def add(path: Path | None, title: str, caption: str) -> None:
        if path is not None:
            produced.add(path.name)
            figures.append(FigureRef(title, path.relative_to(out).as_posix(), caption))

    columns, names = comparison_columns(eval_dir, evals, params.report.samples, missing)
    add(figs.comparison_grid(columns, names, fig_dir / "comparison.png") if names else None, "Comparison grid",
        f"{len(names)} test images: gray input, ground truth, then each model's colorization (grey tile: file missing).")
    if not names and params.report.samples > 0:
        missing.append("No sample PNGs at all: no comparison grid.")
    palettes = load_palettes(eval_dir, evals, missing)
    add(figs.palette_maps(palettes, params.report.samples, fig_dir / "palettes.png"), "PalGAN palettes",
        "Global ab palettes (256-bin histograms over the ab plane drawn as 16×16, jet colormap, shared scale per row): "
        "ground truth, then each PalGAN-family model's predicted palette.")
    histories = {m: r.history for m, r in runs.items() if not r.history.empty}
    add(figs.training_curves(histories, fig_dir / "training_curves.png"), "Training curves",
        "Generator (g_total) and discriminator (d_total) losses per step from MLflow "
        "(models without an MLflow run are left out; see the MLflow runs table).")
    if not histories:
        missing.append("No training-loss history in MLflow: no training curves.")
    long = metrics_long(evals)
    add(figs.metric_bars(long, _bar_metrics(long), fig_dir / "metrics.png"), "Metrics per model",
        "Measured metrics per model (this run's protocol; FD-… panels are proxies, not FID; FID/FD from fewer than "
        "2,048 images is unstable — see the tables for sample counts; n/a: not computed).")
    for name in FIGURE_FILES:  # a figure not drawn this time must not survive from an earlier build
        if name not in produced and (fig_dir / name).exists():
            (fig_dir / name).unlink()

    data = ReportData(
        tables=tables,
        figures=figures,
        runs=runs,
        missing=missing,
        sources={"evaluation results": str(eval_dir), "MLflow tracking URI": tracking,
                 "MLflow experiment": params.tracking.experiment},
        protocols=[(ev.label, protocol_text(ev), ev.details) for ev in evals],
        plots=_plots(evals, runs),
    )
    index = write_report(data, out)
    log.info("report written to %s (%d tables, %d figures, %d notes on missing inputs)", index, len(tables), len(figures), len(missing))
    return index


# ---------------------------------------------------------------------- entry points

def _run(args: argparse.Namespace) -> int:
    root = Path(args.root).resolve() if args.root else project_root()
    params = load_params(args.params or root / "params.yaml")
    print(build_report(params, root, tracking_uri(params, root) if args.root else None))
    return 0


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", help="params.yaml to read (default: <root>/params.yaml)")
    parser.add_argument("--root", help="project root holding the evaluation results (default: the cwd); its mlflow.db unless tracking.uri is set")


def register(subparsers) -> None:
    """``chromapipe report``."""
    parser = subparsers.add_parser("report", help="rebuild reports/ from evaluation results and MLflow (no retraining)")
    _add_arguments(parser)
    parser.set_defaults(func=_run)
