"""The report's tables, built with pandas, in the layouts of the papers they reproduce.

Rules every table follows, because a colorization number is meaningless without its protocol:
- a row is either *reported* (a paper's number) or *measured* (this run's); a cell never holds both;
- a metric this run could not compute says so in its cell ("n/a: <short reason>", full reason as a
  footnote) instead of being blank or silently dropped;
- a Fréchet distance on another network's features (``fd_<net>``, e.g. ``fd_effnetlite0``) is a proxy
  and never appears in an FID column: it gets its own column named as a proxy;
- every FID/FD cell carries its sample count, and a warning below 2,048 samples (the covariance estimate
  is unstable there and the value is not comparable with the papers' 10k–50k-image numbers).

Cells are strings (already formatted); ``render.py`` turns a :class:`Table` into Markdown and HTML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from chromapipe.metrics.record import MEASURED, MetricsRecord, is_proxy
from chromapipe.reporting import published as pub

FID_MIN_SAMPLES = 2048
NOT_EVALUATED = "—"  # a row that was not evaluated on this column group's dataset
REPORTED = "reported"

_LABELS = {
    "psnr": "PSNR↑",
    "ssim": "SSIM↑",
    "lpips": "LPIPS↓",
    "fid": "FID↓",
    "cf": "CF",
    "cf_gt": "CF (ground truth)",
    "delta_cf": "ΔCF↓",
}
_DECIMALS = {"psnr": 2, "ssim": 3, "lpips": 3, "fid": 2, "cf": 1, "cf_gt": 1, "delta_cf": 1}
MAIN_METRICS = ("psnr", "ssim", "lpips", "fid")


def metric_label(metric: str) -> str:
    if is_proxy(metric):
        return f"FD-{metric[3:]}↓ (proxy, not FID)"
    return _LABELS.get(metric, metric)


def fmt(metric: str, value: float, decimals: int | None = None) -> str:
    d = decimals if decimals is not None else _DECIMALS.get(metric, 2 if is_proxy(metric) else 3)
    return f"{value:.{d}f}"


def short_reason(reason: str, limit: int = 36) -> str:
    """The first clause of an unavailability reason, short enough for a table cell.

    Long identifiers (file names, versions) are dropped — the footnote keeps the full text — and the
    clause is cut on a word boundary, so "Inception weights pt_inception-2015-12-05 not found locally; …"
    reads "Inception weights not found locally".
    """
    first = reason.strip().split(";")[0].split(". ")[0].split(": ")[0].strip().rstrip(".")
    words = [w for w in first.split() if not (len(w) > 10 and any(ch.isdigit() or ch in "_/\\" for ch in w))]
    out = ""
    for w in words or first.split():
        if len(out) + len(w) + 1 > limit:
            return (out if len(out) >= limit // 2 else " ".join(words or first.split())[: limit - 1].rstrip()) + "…"
        out = f"{out} {w}".strip()
    return out


class Footnotes:
    """Numbered, de-duplicated footnotes for one table (a reason repeated in many cells gets one number)."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def mark(self, text: str) -> str:
        if text not in self.items:
            self.items.append(text)
        return f"[{self.items.index(text) + 1}]"


def protocol_text(ev: MetricsRecord) -> str:
    """One line naming what a measured number means: data, split, size, resolution, color space, averaging."""
    p = ev.protocol
    if not p:
        return "protocol not recorded in metrics.json"
    parts = [f"{p.get('dataset', '?')}/{p.get('split', '?')}", f"n={p.get('n_images', '?')}"]
    if p.get("resolution"):
        parts.append(f"{p['resolution']}² ({p.get('resize', '?')})")
    for key in ("color_space", "averaging"):
        if p.get(key):
            parts.append(str(p[key]))
    extra = sorted(set(p) - {"dataset", "split", "n_images", "resolution", "resize", "color_space", "averaging"})
    parts += [f"{k}={p[k]}" for k in extra]
    return ", ".join(parts)


def protocols_summary(evals: list[MetricsRecord]) -> str:
    """Each distinct measured protocol once, with the models measured under it."""
    groups: dict[str, list[str]] = {}
    for ev in evals:
        groups.setdefault(protocol_text(ev), []).append(ev.name)
    if len(groups) == 1:
        return next(iter(groups)) + " (all measured models)"
    return "; ".join(f"{text} ({', '.join(models)})" for text, models in groups.items())


def measured_cell(ev: MetricsRecord, metric: str, notes: Footnotes) -> str:
    """A measured value, or why there is none; FID/FD with sample count and small-sample warning."""
    value = ev.metrics.get(metric)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        text = fmt(metric, float(value))
        if metric == "fid" or is_proxy(metric):
            n = ev.n_samples(metric)
            text += f" (n={n if n is not None else '?'})"
            if n is None or n < FID_MIN_SAMPLES:
                text += " ⚠ " + notes.mark(
                    f"Fréchet distance from fewer than {FID_MIN_SAMPLES:,} samples: the covariance estimate is "
                    "unstable and the value is biased upwards; not comparable with the papers' 10k–50k-image values."
                )
        return text
    if metric in ev.unavailable:
        reason = ev.unavailable[metric]
        return f"n/a: {short_reason(reason)} " + notes.mark(f"{metric_label(metric)} unavailable: {reason}")
    if metric in ev.metrics:
        return "n/a: not computed " + notes.mark(f"{ev.name}: metrics.json has {metric} = {value!r} and no reason")
    return "n/a: not computed " + notes.mark(f"{ev.name}: metrics.json has no {metric!r} entry")


def reported_cell(value: float | None, metric: str, decimals: int | None = None) -> str:
    return "N/A (not reported)" if value is None else fmt(metric, value, decimals)


@dataclass
class Table:
    """A report table: formatted string cells plus what the renderer needs around them."""

    key: str
    title: str
    caption: str
    frame: pd.DataFrame  # string cells; columns are a 2-level MultiIndex (group, column)
    kinds: list[str]  # per row: "reported" | "measured"
    links: dict[tuple[int, str], str] = field(default_factory=dict)  # (row position, column label) -> URL
    footnotes: list[str] = field(default_factory=list)


RunLinks = dict[str, tuple[str, str | None]]  # model -> (cell text, URL or None)


def _frame(rows: list[dict[tuple[str, str], str]]) -> pd.DataFrame:
    columns: list[tuple[str, str]] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    columns = [c for c in columns if c[1] != "protocol"] + [c for c in columns if c[1] == "protocol"]  # protocol last
    frame = pd.DataFrame(rows, columns=pd.MultiIndex.from_tuples(columns))
    return frame.fillna(NOT_EVALUATED).astype(str)


def _append_measured(rows: list, kinds: list, link_rows: dict, ev: "MetricsRecord", head: dict, cols, runs, notes) -> None:
    """Append one measured row (source, run link, metric cells, protocol) after ``head``'s identifying cells."""
    text, url = _run_cell(ev, runs)
    row = {**head, ("", "source"): "measured (this run)", ("", "run"): text}
    for m in cols:
        row[("metrics", metric_label(m))] = measured_cell(ev, m, notes)
    row[("", "protocol")] = protocol_text(ev)
    link_rows[len(rows)] = (text, url)
    rows.append(row)
    kinds.append(MEASURED)


def _run_cell(ev: MetricsRecord, runs: RunLinks, short: bool = True) -> tuple[str, str | None]:
    """The run cell: the run id (first 8 characters in the paper-layout tables, to keep them narrow) and its link."""
    text, url = runs.get(ev.name, (ev.run_id or "no run id", None))
    if short and len(text) > 12:
        text = text[:8] + "…"
    return text, url


def _measured_rows_order(evals: list[MetricsRecord]) -> list[MetricsRecord]:
    """Models first (PalGAN family, then alphabetical), the gray baseline last."""
    return sorted(evals, key=lambda e: (e.is_baseline, not e.name.startswith("palgan"), e.name))


def _finish(key: str, title: str, caption: str, rows: list[dict], kinds: list[str], link_rows: dict[int, tuple[str, str | None]], notes: Footnotes) -> Table:
    frame = _frame(rows)
    links = {(i, "run"): url for i, (_, url) in link_rows.items() if url}
    return Table(key, title, caption, frame, kinds, links, notes.items)


def _measured_group(ev: MetricsRecord) -> str:
    p = ev.protocol
    return f"this run: {p.get('dataset', '?')} / {p.get('split', '?')} (measured)"


def palgan_main_table(evals: list[MetricsRecord], runs: RunLinks) -> Table:
    """Table 1: PalGAN's main table layout, paper rows (reported) then this run's models (measured)."""
    notes = Footnotes()
    records = [r for r in pub.published_records() if r.table == pub.PALGAN_MAIN]
    methods = list(dict.fromkeys(r.method for r in records))
    measured = _measured_rows_order(evals)
    proxies = sorted({p for ev in measured for p in ev.proxies()})
    groups = list(dict.fromkeys(_measured_group(ev) for ev in measured))
    rows: list[dict] = []
    kinds: list[str] = []
    link_rows: dict[int, tuple[str, str | None]] = {}
    head = lambda method, source, run: {("", "method"): method, ("", "source"): source, ("", "run"): run}  # noqa: E731
    for method in methods:
        row = head(method, "reported (PalGAN paper)", "")
        for r in records:
            if r.method == method:
                row[(r.dataset, metric_label(r.metric))] = reported_cell(r.value, r.metric)
        for g in groups:
            for m in list(MAIN_METRICS) + proxies:
                row[(g, metric_label(m))] = NOT_EVALUATED
        rows.append(row)
        kinds.append(REPORTED)
    for ev in measured:
        counterpart = pub.paper_row(ev.name, pub.PALGAN_MAIN)
        text, url = _run_cell(ev, runs)
        row = head(ev.label + (f" (↔ {counterpart})" if counterpart else ""), "measured (this run)", text)
        for dataset in pub.PALGAN_DATASETS:
            for m in MAIN_METRICS:
                row[(dataset, metric_label(m))] = NOT_EVALUATED
        g = _measured_group(ev)
        for m in list(MAIN_METRICS) + proxies:
            row[(g, metric_label(m))] = measured_cell(ev, m, notes)
        link_rows[len(rows)] = (text, url)
        rows.append(row)
        kinds.append(MEASURED)
    caption = (
        f"Reported rows: {pub.PROTOCOLS[pub.PALGAN_MAIN]}. Measured rows: this run's protocol — "
        + protocols_summary(measured)
        + f". “{NOT_EVALUATED}”: not evaluated on that dataset. ¹ automatic colorization; ², * as marked in the "
        "paper. Proxy Fréchet distances (FD-…) use a different feature network and are not FID."
    )
    if not measured:
        caption += " No measured model: no evaluation/*/metrics.json was found."
    return _finish("table1", "Table 1 — PalGAN main table layout (PSNR↑ SSIM↑ LPIPS↓ FID↓ per dataset)", caption, rows, kinds, link_rows, notes)


def _metric_columns(measured: list[MetricsRecord], metrics: tuple[str, ...], with_proxies: bool = True) -> list[str]:
    cols = list(metrics)
    if with_proxies:
        cols += sorted({p for ev in measured for p in ev.proxies()})
    return cols


def thesis_table(evals: list[MetricsRecord], runs: RunLinks) -> Table:
    """Table 2: the thesis' configurations ① ② ③ × FID, SSIM, PSNR, LPIPS, reported then measured."""
    notes = Footnotes()
    records = [r for r in pub.published_records() if r.table == pub.THESIS_TABLE]
    by_model = {ev.name: ev for ev in evals}
    matched = [m for m, rows in pub.MODEL_ROWS.items() if pub.THESIS_TABLE in rows]
    present = [by_model[m] for m in matched if m in by_model]
    cols = _metric_columns(present, ("fid", "ssim", "psnr", "lpips"))
    rows: list[dict] = []
    kinds: list[str] = []
    link_rows: dict[int, tuple[str, str | None]] = {}
    methods = list(dict.fromkeys(r.method for r in records))
    lab_note = notes.mark(
        "The thesis computed FID/SSIM/PSNR/LPIPS on Lab values packed as a 3-channel image (not sRGB) and LPIPS "
        "with VGG; this run measures on sRGB uint8 images. The two kinds of rows are not directly comparable."
    )
    for i, method in enumerate(methods):
        row = {("", "configuration"): method, ("", "source"): "reported (thesis) " + lab_note, ("", "run"): ""}
        for r in records:
            if r.method == method:
                row[("metrics", metric_label(r.metric))] = fmt(r.metric, r.value, 3)
        row[("", "protocol")] = "Places205 test (23,797), 256², Lab packed as 3-channel (not sRGB)"
        rows.append(row)
        kinds.append(REPORTED)
        next_method = methods[i + 1] if i + 1 < len(methods) else None
        if next_method is not None and next_method[0] == method[0]:
            continue  # ③ has two reported rows (30/50 epochs); its measured row follows both
        for model in matched:
            paper_row = pub.paper_row(model, pub.THESIS_TABLE)
            if paper_row and paper_row[0] == method[0] and model in by_model:
                ev = by_model[model]
                _append_measured(rows, kinds, link_rows, ev, {("", "configuration"): f"{method[0]} {ev.name}"}, cols, runs, notes)
    missing = [m for m in matched if m not in by_model]
    caption = (
        "Thesis configurations: ① GAN + 100·L1 (model pix2pix), ② GAN + 100·L1 + 0.003·CE (pix2pix_class), "
        "③ 0.1·WGAN-GP + L2 + 0.003·CE (pix2pix_wgan_class). Reported: " + pub.PROTOCOLS[pub.THESIS_TABLE] + "."
    )
    if missing:
        caption += " Not measured in this run (no metrics.json): " + ", ".join(missing) + "."
    return _finish("table2", "Table 2 — thesis (pix2pix + classification): reported vs measured", caption, rows, kinds, link_rows, notes)


def chromagan_table(evals: list[MetricsRecord], runs: RunLinks) -> Table:
    """Table 3: ChromaGAN's PSNR comparison, reported rows then this run's matching models and the gray baseline."""
    notes = Footnotes()
    records = [r for r in pub.published_records() if r.table == pub.CHROMAGAN_PSNR]
    rows: list[dict] = []
    kinds: list[str] = []
    link_rows: dict[int, tuple[str, str | None]] = {}
    for r in records:
        rows.append({("", "method"): r.method, ("", "source"): "reported (ChromaGAN paper)", ("", "run"): "",
                     ("", "PSNR (dB)↑"): fmt("psnr", r.value), ("", "protocol"): "1,000 ILSVRC2012 images, 224², RGB"})
        kinds.append(REPORTED)
    chosen = [ev for ev in _measured_rows_order(evals) if pub.paper_row(ev.name, pub.CHROMAGAN_PSNR) or ev.is_baseline]
    for ev in chosen:
        counterpart = pub.paper_row(ev.name, pub.CHROMAGAN_PSNR)
        text, url = _run_cell(ev, runs)
        link_rows[len(rows)] = (text, url)
        rows.append({("", "method"): ev.label + (f" (↔ {counterpart})" if counterpart else ""), ("", "source"): "measured (this run)",
                     ("", "run"): text, ("", "PSNR (dB)↑"): measured_cell(ev, "psnr", notes), ("", "protocol"): protocol_text(ev)})
        kinds.append(MEASURED)
    caption = "Reported: " + pub.PROTOCOLS[pub.CHROMAGAN_PSNR] + ". Measured: this run's protocol (see the row)."
    if not any(ev.name == "chromagan" for ev in chosen):
        caption += " The chromagan model was not measured in this run."
    return _finish("table3", "Table 3 — ChromaGAN PSNR comparison: reported vs measured", caption, rows, kinds, link_rows, notes)


def ca_ablation_table(evals: list[MetricsRecord], runs: RunLinks) -> Table | None:
    """PalGAN's chromatic-attention ablation; None unless at least one CA variant was trained and evaluated."""
    by_model = {ev.name: ev for ev in evals}
    if not any(m in by_model for m in pub.CA_VARIANTS if m != "palgan"):
        return None
    notes = Footnotes()
    records = [r for r in pub.published_records() if r.table == pub.PALGAN_CA]
    measured = [by_model[m] for m in pub.CA_VARIANTS if m in by_model]
    cols = _metric_columns(measured, MAIN_METRICS)
    rows: list[dict] = []
    kinds: list[str] = []
    link_rows: dict[int, tuple[str, str | None]] = {}
    yes = lambda b: "✓" if b else "✗"  # noqa: E731
    for model, (g, l) in pub.CA_VARIANTS.items():
        method = pub.paper_row(model, pub.PALGAN_CA)
        row = {("CA", "global"): yes(g), ("CA", "local"): yes(l), ("", "source"): "reported (PalGAN paper)", ("", "method"): method, ("", "run"): ""}
        for r in records:
            if r.method == method:
                row[("metrics", metric_label(r.metric))] = reported_cell(r.value, r.metric)
        for p in cols[len(MAIN_METRICS):]:
            row[("metrics", metric_label(p))] = NOT_EVALUATED
        row[("", "protocol")] = "COCO-Stuff val"
        rows.append(row)
        kinds.append(REPORTED)
        if model in by_model:
            ev = by_model[model]
            _append_measured(rows, kinds, link_rows, ev, {("CA", "global"): yes(g), ("CA", "local"): yes(l), ("", "method"): ev.name}, cols, runs, notes)
    missing = [m for m in pub.CA_VARIANTS if m not in by_model]
    caption = "Reported: " + pub.PROTOCOLS[pub.PALGAN_CA] + ". Measured: this run's protocol (see the row)."
    if missing:
        caption += " Variants not measured in this run: " + ", ".join(missing) + "."
    return _finish("ca_ablation", "PalGAN chromatic-attention (CA) ablation: reported vs measured", caption, rows, kinds, link_rows, notes)


ALL_METRICS_ORDER = ("psnr", "ssim", "lpips", "fid")
COLOR_METRICS = ("cf", "cf_gt", "delta_cf")


def all_measured_table(evals: list[MetricsRecord], runs: RunLinks) -> Table:
    """Every measured model × every metric it has (nothing dropped), with n_images and the protocol."""
    notes = Footnotes()
    measured = _measured_rows_order(evals)
    known = set(ALL_METRICS_ORDER) | set(COLOR_METRICS)
    proxies = sorted({p for ev in measured for p in ev.proxies()})
    extra = sorted({k for ev in measured for k in set(ev.metrics) | set(ev.unavailable)} - known - set(proxies))
    cols = list(ALL_METRICS_ORDER) + proxies + list(COLOR_METRICS) + extra
    rows: list[dict] = []
    link_rows: dict[int, tuple[str, str | None]] = {}
    for ev in measured:
        text, url = _run_cell(ev, runs, short=False)
        n = ev.protocol.get("n_images")
        row = {("", "model"): ev.label, ("", "arch"): ev.arch or "—", ("", "run"): text, ("", "n_images"): str(n if n is not None else "?")}
        for m in cols:
            row[("metrics", metric_label(m))] = measured_cell(ev, m, notes)
        row[("", "protocol")] = protocol_text(ev)
        link_rows[len(rows)] = (text, url)
        rows.append(row)
    caption = (
        "All metrics of every model this run evaluated (measured). CF: Hasler–Süsstrunk colorfulness of the "
        "predictions; ΔCF = |CF(pred) − CF(ground truth)|."
    )
    if not rows:
        rows.append({("", "model"): "no evaluation/*/metrics.json found"})
    return _finish("measured", "All measured models × all metrics", caption, rows, [MEASURED] * len(rows), link_rows, notes)


def build_tables(evals: list[MetricsRecord], runs: RunLinks) -> list[Table]:
    """All report tables in display order (the CA ablation only when its variants were trained)."""
    tables = [palgan_main_table(evals, runs), thesis_table(evals, runs), chromagan_table(evals, runs)]
    ca = ca_ablation_table(evals, runs)
    if ca is not None:
        tables.append(ca)
    tables.append(all_measured_table(evals, runs))
    return tables


def metrics_long(evals: list[MetricsRecord]) -> pd.DataFrame:
    """Measured metrics as a tidy frame (model, metric, value, n_images): the DVC plots file and the bar chart."""
    rows = []
    for ev in _measured_rows_order(evals):
        for metric, value in ev.metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                rows.append({"model": ev.name, "metric": metric, "value": float(value), "n_images": ev.protocol.get("n_images")})
    return pd.DataFrame(rows, columns=["model", "metric", "value", "n_images"])
