"""The report's PNG figures, drawn with matplotlib's object API on the Agg canvas.

Why not pyplot: the report runs inside a DVC stage and inside tests next to other code; the object API
(``matplotlib.figure.Figure``) renders off-screen without touching pyplot's global backend or figure
registry. Every function returns the written path, or None with nothing written when it had no data —
the caller records what was missing, so a figure is never a silent blank.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image

from chromapipe.layout import LOSS_METRICS

DPI = 100


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def _load(path: Path | None) -> np.ndarray | None:
    if path is None or not path.is_file():
        return None
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError):
        return None


def _placeholder(ax, text: str) -> None:
    ax.set_facecolor("#eeeeee")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=8, color="#555555", transform=ax.transAxes)


def comparison_grid(columns: list[tuple[str, dict[str, Path]]], names: list[str], path: Path) -> Path | None:
    """Images (rows) × sources (columns: gray input, ground truth, each model); a missing file is a grey tile.

    ``columns``: (title, {sample name: PNG path}); ``names``: the sample file names to show, in order.
    """
    if not names or not columns:
        return None
    rows, cols = len(names), len(columns)
    fig = Figure(figsize=(1.9 * cols, 1.9 * rows + 0.3))
    axes = fig.subplots(rows, cols, squeeze=False)
    for r, name in enumerate(names):
        for c, (title, files) in enumerate(columns):
            ax = axes[r][c]
            img = _load(files.get(name))
            if img is None:
                _placeholder(ax, "missing")
            else:
                ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
            if c == 0:
                ax.set_ylabel(Path(name).stem, fontsize=8)
    fig.subplots_adjust(wspace=0.04, hspace=0.04)
    return _save(fig, path)


def palette_maps(palettes: dict[str, dict[str, np.ndarray]], n: int, path: Path) -> Path | None:
    """PalGAN palettes as heat maps on their saved grid (16×16, jet, as in the paper), ground truth first,
    one row per image.

    ``palettes``: model -> {"pred": (N,H,W), "gt": (N,H,W)}. A row shares one colour scale so the
    predicted and true palettes are comparable.
    """
    if not palettes:
        return None
    models = list(palettes)
    gt = palettes[models[0]]["gt"]
    rows = min(n, *(len(p["pred"]) for p in palettes.values()), len(gt))
    if rows <= 0:
        return None
    cols = 1 + len(models)
    fig = Figure(figsize=(1.8 * cols + 0.6, 1.8 * rows + 0.3))
    axes = fig.subplots(rows, cols, squeeze=False)
    cmap = colormaps["jet"]
    for r in range(rows):
        maps = [gt[r]] + [palettes[m]["pred"][r] for m in models]
        vmax = float(max(np.nanmax(m) for m in maps)) or 1.0
        for c, (title, data) in enumerate(zip(["ground truth"] + [f"{m} (pred)" for m in models], maps)):
            ax = axes[r][c]
            im = ax.imshow(np.asarray(data, dtype=float), cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
            if c == 0:
                ax.set_ylabel(f"image {r}", fontsize=8)
        fig.colorbar(im, ax=list(axes[r]), fraction=0.02, pad=0.01)
    return _save(fig, path)


def training_curves(histories: dict[str, pd.DataFrame], path: Path) -> Path | None:
    """G and D total losses against step, one panel per model (``histories``: model -> step, key, value)."""
    histories = {m: h for m, h in histories.items() if not h.empty}
    if not histories:
        return None
    n = len(histories)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(4.2 * cols, 2.9 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, (model, h) in enumerate(sorted(histories.items())):
        ax = axes[i // cols][i % cols]
        for key, style in zip(LOSS_METRICS, ("-", "--")):
            part = h[h["key"] == key].sort_values("step")
            if not part.empty:
                ax.plot(part["step"], part["value"], style, label=key.split("/")[1], linewidth=1.2)
        ax.set_title(model, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("loss", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for j in range(n, rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    fig.tight_layout()
    return _save(fig, path)


def metric_bars(long: pd.DataFrame, metrics: list[tuple[str, str]], path: Path) -> Path | None:
    """One bar panel per metric, a bar per (evaluation set, model) — sets as colored blocks separated by a line, so
    a bar is only ever read against the bars of its own set; a missing metric gets an "n/a" mark, not a zero bar.

    ``long``: tidy (set, model, metric, value) — ``set`` optional; ``metrics``: (key, panel title) in display order.
    """
    if long.empty:
        return None
    long = long if "set" in long.columns else long.assign(set="")
    entries = list(dict.fromkeys(zip(long["set"], long["model"])))
    metrics = [(k, t) for k, t in metrics if (long["metric"] == k).any()]
    if not metrics:
        return None
    sets = list(dict.fromkeys(s for s, _ in entries))
    palette = colormaps["tab10"]
    colors = [palette(sets.index(s) % 10) for s, _ in entries]
    labels = [f"{m} · {s}" if s else m for s, m in entries]
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig = Figure(figsize=(4.6 * cols, 0.3 * len(entries) * rows + 1.4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    ys = np.arange(len(entries))
    for i, (key, title) in enumerate(metrics):
        ax = axes[i // cols][i % cols]
        sub = long[long["metric"] == key].set_index(["set", "model"])["value"]
        vals = [float(sub[e]) if e in sub.index else np.nan for e in entries]
        ax.barh(ys, [0 if math.isnan(v) else v for v in vals], color=colors)
        for y, v in zip(ys, vals):
            ax.text(0 if math.isnan(v) else v, y, " n/a" if math.isnan(v) else f" {v:.3g}", va="center", fontsize=6)
        for y in (k for k in range(1, len(entries)) if entries[k][0] != entries[k - 1][0]):
            ax.axhline(y - 0.5, color="#999999", linewidth=0.6)
        ax.set_yticks(ys, labels=labels if i % cols == 0 else [""] * len(ys), fontsize=6)
        ax.set_ylim(len(entries) - 0.5, -0.5)
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        ax.margins(x=0.25)
    for j in range(len(metrics), rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    fig.tight_layout()
    return _save(fig, path)


def validation_figure(title: str, subtitle: str, panels: list[tuple[str, pd.DataFrame, float | None]]) -> Figure | None:
    """Small multiples of one model's validation scores against step, each with the gray baseline's value as a
    horizontal dashed line (the score of predicting no color at all on the same images).

    ``panels``: (panel title, frame with step and value, gray baseline value or None). ``subtitle`` carries the
    facts the curves depend on (training data, steps, images seen, hardware). None when no panel has data.
    """
    panels = [p for p in panels if not p[1].empty]
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4.0 * cols, 2.8 * rows + 0.9))
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, (name, frame, reference) in enumerate(panels):
        ax = axes[i // cols][i % cols]
        ax.plot(frame["step"], frame["value"], "o-", color="#4c78a8", markersize=3, linewidth=1.3, label="model (val)")
        if reference is not None:
            ax.axhline(reference, color="#777777", linestyle="--", linewidth=1.1, label="gray input (val)")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for j in range(len(panels), rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    fig.suptitle(f"{title}\n{textwrap.fill(subtitle, 42 * cols)}", fontsize=9)
    fig.tight_layout()
    return fig


def validation_curves(
    title: str, subtitle: str, panels: list[tuple[str, pd.DataFrame, float | None]], path: Path
) -> Path | None:
    """:func:`validation_figure` written to ``path`` (None, nothing written, when there is no curve)."""
    fig = validation_figure(title, subtitle, panels)
    return _save(fig, path) if fig is not None else None
