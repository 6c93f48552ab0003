"""``build_report``: regenerate the whole report from evaluation outputs and the MLflow store alone.

The report stage never retrains or re-evaluates: it reads ``<eval dir>/<model>/<set>/metrics.json`` (one
record per model per evaluation set, the gray baseline included), the sample PNGs and PalGAN palettes
the evaluate stage saved per set, and the MLflow run of each model (link, loss history, validation
curves, parameters). Each input may be absent — a model evaluated without samples, a store that was
deleted, a run id the store does not know, a run trained without validation — and the report still
builds and lists, in a "What is missing" section, exactly what it could not include and why.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from chromapipe.config import Params, tracking_uri
from chromapipe.layout import Layout
from chromapipe.metrics.record import MetricsRecord
from chromapipe.reporting import figures as figs
from chromapipe.reporting.choices import choices_by_table
from chromapipe.reporting.evalsets import (
    EvalIndex,
    comparison_columns,
    load_evaluations,
    load_palettes,
    set_name,
    set_title,
    slug,
)
from chromapipe.reporting.learning import LearningEntry, learning_entries, validation_frame
from chromapipe.reporting.render import FigureRef, ReportData, write_report
from chromapipe.reporting.runs import RunInfo, load_runs
from chromapipe.reporting.tables import build_tables, metric_label, metrics_long, protocol_text

__all__ = ["build_report", "load_evaluations", "load_runs"]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------- figures


class _Figures:
    """The figures drawn this build; any other PNG left in figures/ by an earlier build is removed at the end."""

    def __init__(self, out: Path) -> None:
        self.out, self.dir = out, out / "figures"
        self.refs: list[FigureRef] = []
        self.produced: set[str] = set()

    def ref(self, path: Path | None, title: str, caption: str) -> FigureRef | None:
        if path is None:
            return None
        self.produced.add(path.name)
        return FigureRef(title, path.relative_to(self.out).as_posix(), caption)

    def add(self, path: Path | None, title: str, caption: str) -> None:
        if (ref := self.ref(path, title, caption)) is not None:
            self.refs.append(ref)

    def prune(self) -> None:
        """A figure not drawn this time (a set or model that is gone) must not survive from an earlier build."""
        for stale in self.dir.glob("*.png") if self.dir.is_dir() else []:
            if stale.name not in self.produced:
                stale.unlink()


def _bar_metrics(long: pd.DataFrame) -> list[tuple[str, str]]:
    keys = (
        ["psnr", "ssim", "lpips", "fid"]
        + sorted(k for k in long["metric"].unique() if k.startswith("fd_"))
        + ["delta_cf", "cf"]
    )
    return [(k, metric_label(k)) for k in keys]


def _set_figures(f: _Figures, eval_dir: Path, index: EvalIndex, n: int, missing: list[str]) -> None:
    """Per evaluation set: comparison grid and PalGAN palettes; one metric chart with every set as its own block."""
    any_samples = False
    for name in index.sets():
        title = set_title(name, index.label_of(name))
        columns, names = comparison_columns(eval_dir, index, name, n, missing)
        any_samples |= bool(names)
        f.add(
            figs.comparison_grid(columns, names, f.dir / f"comparison-{slug(name)}.png") if names else None,
            f"Comparison grid — {title}",
            f"{len(names)} images of {name}: gray input, ground truth, then each model's colorization on that set "
            "(grey tile: file missing).",
        )
        palettes = load_palettes(index, name, missing)
        grid = next((p["gt"].shape[1:] for p in palettes.values()), None)
        f.add(
            figs.palette_maps(palettes, n, f.dir / f"palettes-{slug(name)}.png"),
            f"PalGAN palettes — {title}",
            f"Global ab palettes on {name} (histograms over the ab plane drawn as {grid[0] if grid else '?'}×"
            f"{grid[1] if grid else '?'}, jet colormap, shared scale per row): ground truth, then each "
            "PalGAN-family model's predicted palette.",
        )
    if not any_samples and n > 0 and index.records:
        missing.append("No sample PNGs at all: no comparison grid.")
    long = metrics_long(index)
    f.add(
        figs.metric_bars(long, _bar_metrics(long), f.dir / "metrics.png"),
        "Metrics per model and evaluation set",
        "Measured metrics, one colored block per evaluation set (bars labelled model · set; compare bars only within "
        "a block: the sets differ in images, size and protocol — see the all-measured table). FD-… panels are "
        "proxies, not FID; FID/FD from fewer than 2,048 images is unstable; n/a: not computed.",
    )


def _learning_figures(f: _Figures, entries: list[LearningEntry]) -> list[tuple[LearningEntry, FigureRef | None]]:
    """One small-multiples figure per trained model: each validated metric against step, gray baseline as a line."""
    out = []
    for e in entries:
        panels = e.panels()
        path = figs.validation_curves(e.title, e.caption(), panels, f.dir / f"learning-{slug(e.model)}.png")
        out.append(
            (
                e,
                f.ref(
                    path,
                    f"Learning — {e.model}",
                    f"{e.model}: " + ", ".join(p[0] for p in panels) + " on the validation subset against "
                    "step (MLflow val/*); dashed: the gray input on the same images (val_gray/*; absent when "
                    "the run did not log it).",
                ),
            )
        )
    return out


def _plots(index: EvalIndex, runs: dict[str, RunInfo], entries: list[LearningEntry]) -> dict[str, pd.DataFrame]:
    """The DVC plots CSVs: metrics per (set, model), loss histories, validation curves."""
    long = metrics_long(index)
    wide = pd.DataFrame(columns=["set", "model"])
    if not long.empty:
        wide = long.pivot_table(index=["set", "model"], columns="metric", values="value", sort=False)
        order = [k for k, _ in _bar_metrics(long) if k in wide.columns and k != "cf"] + ["cf", "cf_gt"]
        wide = wide[[k for k in order if k in wide.columns] + sorted(set(wide.columns) - set(order))].reset_index()
        wide = wide[["model", "set"] + [c for c in wide.columns if c not in ("model", "set")]]
    hist = [h.assign(model=m) for m, r in runs.items() if not (h := r.history).empty]
    losses = (
        pd.concat(hist, ignore_index=True)[["model", "key", "step", "value"]]
        if hist
        else pd.DataFrame(columns=["model", "key", "step", "value"])
    )
    return {"metrics.csv": wide, "training_losses.csv": losses, "validation.csv": validation_frame(entries)}


# ---------------------------------------------------------------------- assembly


def build_report(params: Params, root: Path | None = None, tracking: str | None = None) -> Path:
    """Build ``<root>/reports/`` (index.html, results.md, figures/, plots/) and return index.html's path.

    Reads ``<root>/evaluation/<model>/<set>/metrics.json`` (and the older flat ``<model>/metrics.json``), each
    set's ``samples/*.png`` (gray baseline: also ``ground_truth/``) and PalGAN ``palettes.npz``, and the MLflow
    store ``tracking`` (default: ``tracking.uri``, else the workspace's ``mlflow.db``). ``root``: the project
    directory (default: the params file's).
    """
    layout = Layout(Path(root).resolve()) if root else params.layout
    tracking = tracking or tracking_uri(params)
    out = layout.reports
    missing: list[str] = []
    eval_dir = layout.evaluation
    evals = load_evaluations(eval_dir, missing)
    index = EvalIndex(evals)
    missing += index.duplicates
    not_evaluated = sorted(set(params.models) - {ev.name for ev in evals})
    if not_evaluated:
        missing.append("Models in params.yaml without evaluation results: " + ", ".join(not_evaluated) + ".")
    runs = load_runs(tracking, params.tracking.experiment, evals, missing, models=params.models)
    links = {m: (r.run_id or "no run", r.url) for m, r in runs.items()}

    f = _Figures(out)
    _set_figures(f, eval_dir, index, params.report.samples, missing)
    histories = {m: r.history for m, r in runs.items() if not r.history.empty}
    f.add(
        figs.training_curves(histories, f.dir / "training_curves.png"),
        "Training curves",
        "Generator (g_total) and discriminator (d_total) losses per step from MLflow "
        "(models without an MLflow run are left out; see the MLflow runs table).",
    )
    if not histories:
        missing.append("No training-loss history in MLflow: no training curves.")
    entries = learning_entries(runs, evals)
    learning = _learning_figures(f, entries)
    f.prune()

    data = ReportData(
        tables=build_tables(index, links),
        figures=f.refs,
        runs=runs,
        missing=missing,
        sources={
            "evaluation results": str(eval_dir),
            "MLflow tracking URI": tracking,
            "MLflow experiment": params.tracking.experiment,
        },
        protocols=[(f"{ev.label} on {set_name(ev)}", protocol_text(ev), ev.details) for ev in _protocol_order(index)],
        plots=_plots(index, runs, entries),
        learning=learning,
        open_choices=[(title, [c.text() for c in cs]) for title, cs in choices_by_table(params, index)],
    )
    index_html = write_report(data, out)
    log.info(
        "report written to %s (%d tables, %d figures, %d learning curves, %d notes on missing inputs)",
        index_html,
        len(data.tables),
        len(f.refs),
        len(learning),
        len(missing),
    )
    return index_html


def _protocol_order(index: EvalIndex) -> list[MetricsRecord]:
    return [ev for name in index.sets() for ev in index.on_set(name)]
