"""The report's tables, built with pandas, in the layouts of the papers they reproduce.

Rules every table follows, because a colorization number is meaningless without its protocol:
- a row is either *reported* (a paper's number) or *measured* (this run's); a cell never holds both;
- a metric this run could not compute says so in its cell ("n/a: <short reason>", full reason as a
  footnote) instead of being blank or silently dropped;
- a Fréchet distance on another network's features (``fd_<net>``, e.g. ``fd_effnetlite0``) is a proxy
  and never appears in an FID column: it gets its own column named as a proxy;
- every FID/FD cell carries its sample count, and a warning below 2,048 samples (the covariance estimate
  is unstable there and the value is not comparable with the papers' 10k–50k-image numbers);
- a measured cell in a paper's table comes only from the record whose model and evaluation set are the
  ones the cell states: the row's model, and the data set of the column group (or of the whole table)
  equal to the record's ``dataset_label`` (:class:`~chromapipe.reporting.evalsets.EvalIndex.cell`).
  Records on sets no paper used (the sample set, a hold-out of real photos) appear only in the
  all-measured table, grouped by set, each row with its protocol.

Cells are strings (already formatted); ``render.py`` turns a :class:`Table` into Markdown and HTML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from chromapipe.metrics.record import MEASURED, TRAIN_MODE_SUFFIX, MetricsRecord, is_proxy
from chromapipe.reporting import published as pub
from chromapipe.reporting.evalsets import EvalIndex, set_label, set_name, set_title

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
    "lab_psnr": "PSNR↑ (Lab-packed)",
    "lab_ssim": "SSIM↑ (Lab-packed)",
    "lab_lpips_vgg": "LPIPS-vgg↓ (Lab-packed)",
    "lab_fid": "FID↓ (Lab-packed)",
}
_DECIMALS = {
    "psnr": 2,
    "ssim": 3,
    "lpips": 3,
    "fid": 2,
    "cf": 1,
    "cf_gt": 1,
    "delta_cf": 1,
    "lab_psnr": 3,
    "lab_ssim": 3,
    "lab_lpips_vgg": 3,
    "lab_fid": 3,
}
FRECHET = ("fid", "lab_fid")
#: the thesis' metrics in its own protocol (metrics/lab_packed.py), keyed by the metric it reported
THESIS_LAB = {"fid": "lab_fid", "ssim": "lab_ssim", "psnr": "lab_psnr", "lpips": "lab_lpips_vgg"}
MAIN_METRICS = ("psnr", "ssim", "lpips", "fid")


def metric_label(metric: str) -> str:
    if is_proxy(metric):
        return f"FD-{metric[3:]}↓ (proxy, not FID)"
    if metric.endswith(TRAIN_MODE_SUFFIX):
        base = metric_label(metric.removesuffix(TRAIN_MODE_SUFFIX))
        return base[:-1] + ", G in train mode)" if base.endswith(")") else f"{base} (G in train mode)"
    return _LABELS.get(metric, metric)


def fmt(metric: str, value: float, decimals: int | None = None) -> str:
    metric = metric.removesuffix(TRAIN_MODE_SUFFIX)
    d = decimals if decimals is not None else _DECIMALS.get(metric, 2 if is_proxy(metric) else 3)
    return f"{value:.{d}f}"


def under_protocol(ev: MetricsRecord, metric: str) -> bool:
    """Whether the record was scored under the protocol (and generator mode) ``metric`` belongs to: a Lab-packed
    key (``lab_*``, ``lab_*_trainmode``) exists only for the models ``evaluate.lab_packed`` names, in the modes
    ``evaluate.generator_mode`` asks for. Its absence is "not scored so", not a failure to compute."""
    return not metric.startswith("lab_") or metric in ev.metrics or metric in ev.unavailable


def record_cell(ev: MetricsRecord, metric: str, notes: Footnotes) -> str:
    """:func:`measured_cell`, or “—” for a metric of a protocol the record was not scored under."""
    return measured_cell(ev, metric, notes) if under_protocol(ev, metric) else NOT_EVALUATED


def generator_modes(ev: MetricsRecord) -> list[str]:
    """The generator modes a record holds numbers of: eval (every model's sRGB numbers), and train where it has
    train-mode keys; none for the gray baseline (no network)."""
    if ev.is_baseline:
        return []
    keys = [*ev.metrics, *ev.unavailable]
    return ["eval"] + (["train"] if any(k.endswith(TRAIN_MODE_SUFFIX) for k in keys) else [])


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


_PROTOCOL_KEYS = (
    "dataset",
    "dataset_label",
    "source",
    "split",
    "n_images",
    "resolution",
    "resize",
    "color_space",
    "averaging",
)
_IMPLEMENTATION_OF = ("psnr", "lpips", "fid", "lab_psnr")  # SSIM shares PSNR's implementation; proxies are added
_IMPLEMENTATION_NAME = {"psnr": "PSNR/SSIM", "lab_psnr": "Lab-packed PSNR/SSIM"}


def implementation_text(ev: MetricsRecord) -> str:
    """Which code computed the numbers (from ``details``), short:
    ``PSNR/SSIM chromapipe …; LPIPS lpips 0.1.4 (alex)``."""
    parts = []
    for metric in list(_IMPLEMENTATION_OF) + ev.proxies():
        d = ev.details.get(metric)
        if not isinstance(d, dict):
            continue
        impl = str(d.get("implementation") or d.get("network") or "").split(";")[0].split(" (")[0].strip()
        if not impl:
            continue
        if d.get("net"):
            impl += f" ({d['net']})"
        name = _IMPLEMENTATION_NAME.get(metric) or metric_label(metric).split("↓")[0].split("↑")[0]
        parts.append(f"{name} {impl}")
    return "; ".join(parts)


def protocol_text(ev: MetricsRecord, implementation: bool = True) -> str:
    """One line naming what a measured number means: set (and the papers' name for it), split, count,
    resolution, color space, averaging, any other protocol entry, and (unless told not to) the implementation."""
    p = ev.protocol
    if not p:
        return f"{set_name(ev)}: protocol not recorded in metrics.json"
    label = set_label(ev)
    parts = [
        f"{set_name(ev)}{f' [{label}]' if label else ''}" + (f" ({p['source']})" if p.get("source") else ""),
        f"{p.get('split', '?')} split",
        f"n={p.get('n_images', '?')}",
    ]
    if p.get("resolution"):
        parts.append(f"{p['resolution']}² ({p.get('resize', '?')})")
    for key in ("color_space", "averaging"):
        if p.get(key):
            parts.append(str(p[key]))
    parts += [f"{k}={p[k]}" for k in sorted(set(p) - set(_PROTOCOL_KEYS)) if p[k] is not None]
    impl = implementation_text(ev) if implementation else ""
    return ", ".join(parts) + (f"; implementation: {impl}" if impl else "")


def protocols_text(records: list[MetricsRecord]) -> str:
    """Several records' protocols in one cell (Table 1's row spans data sets): each set's, then the implementation
    once when the records share it."""
    impls = list(dict.fromkeys(implementation_text(ev) for ev in records))
    if len(impls) != 1:
        return " | ".join(protocol_text(ev) for ev in records)
    return " | ".join(protocol_text(ev, implementation=False) for ev in records) + (
        f"; implementation: {impls[0]}" if impls[0] else ""
    )


def measured_cell(ev: MetricsRecord, metric: str, notes: Footnotes) -> str:
    """A measured value, or why there is none; FID/FD with sample count and small-sample warning."""
    value = ev.metrics.get(metric)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        text = fmt(metric, float(value))
        if metric in FRECHET or is_proxy(metric):
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
Evals = list[MetricsRecord] | EvalIndex


def _index(evals: Evals) -> EvalIndex:
    return evals if isinstance(evals, EvalIndex) else EvalIndex(list(evals))


def _frame(rows: list[dict[tuple[str, str], str]]) -> pd.DataFrame:
    columns: list[tuple[str, str]] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    columns = [c for c in columns if c[1] != "protocol"] + [c for c in columns if c[1] == "protocol"]  # protocol last
    frame = pd.DataFrame(rows, columns=pd.MultiIndex.from_tuples(columns))
    return frame.fillna(NOT_EVALUATED).astype(str)


def _run_cell(ev: MetricsRecord, runs: RunLinks, short: bool = True) -> tuple[str, str | None]:
    """The run cell: the run id (first 8 characters in the paper-layout tables, to keep them narrow) and its link.

    A record naming another run than its model's (a set evaluated with an older generator) shows its own
    run id, unlinked, rather than the model's current run.
    """
    text, url = runs.get(ev.name, (ev.run_id or "no run id", None))
    if ev.run_id and text != ev.run_id and url is not None:
        text, url = ev.run_id, None
    if short and len(text) > 12:
        text = text[:8] + "…"
    return text, url


class _Rows:
    """Rows, their kinds and run links as a table is assembled."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.kinds: list[str] = []
        self.links: dict[int, str] = {}
        self.notes = Footnotes()

    def reported(self, row: dict) -> None:
        self.rows.append(row)
        self.kinds.append(REPORTED)

    def measured(self, row: dict, run: tuple[str, str | None]) -> None:
        if run[1]:
            self.links[len(self.rows)] = run[1]
        self.rows.append(row)
        self.kinds.append(MEASURED)

    def finish(self, key: str, title: str, caption: str) -> Table:
        return Table(
            key,
            title,
            caption,
            _frame(self.rows),
            self.kinds,
            {(i, "run"): u for i, u in self.links.items()},
            self.notes.items,
        )


def _proxies(records: list[MetricsRecord]) -> list[str]:
    return sorted({p for ev in records for p in ev.proxies()})


def _measured_label(ev: MetricsRecord, table: str) -> str:
    """The row label: the model (or the gray baseline), with the paper row it reproduces when it has one."""
    counterpart = pub.paper_row(ev.name, table)
    return ev.label + (f" (↔ {counterpart})" if counterpart else "")


def _not_measured_note(index: EvalIndex, table: str, labels: tuple[str, ...]) -> str:
    """Caption text naming the models that reproduce a row of ``table`` but have no record on any of its data sets."""
    parts = []
    for model, rows in pub.MODEL_ROWS.items():
        if table not in rows or any(index.cell(model, lab) for lab in labels):
            continue
        where = index.sets_of(model)
        parts.append(
            f"{model} (↔ {rows[table]}): "
            + (f"evaluated only on {', '.join(where)} (all-measured table)" if where else "not evaluated")
        )
    return (f" Not measured on {' / '.join(labels)}: " + "; ".join(parts) + ".") if parts else ""


def palgan_main_table(evals: Evals, runs: RunLinks) -> Table:
    """Table 1: PalGAN's main table layout — paper rows (reported), then one row per model evaluated on one of
    its data sets (measured), each cell from that model's record on that column group's data set."""
    index = _index(evals)
    labels = pub.table_datasets(pub.PALGAN_MAIN)
    records = [r for r in pub.published_records() if r.table == pub.PALGAN_MAIN]
    proxies = {lab: _proxies([ev for m in index.models_on(labels) if (ev := index.cell(m, lab))]) for lab in labels}
    t = _Rows()
    for method in dict.fromkeys(r.method for r in records):
        row = {("", "method"): method, ("", "source"): "reported (PalGAN paper)", ("", "run"): ""}
        for r in records:
            if r.method == method:
                row[(r.dataset, metric_label(r.metric))] = reported_cell(r.value, r.metric)
        for lab in labels:
            row.update({(lab, metric_label(p)): NOT_EVALUATED for p in proxies[lab]})
        row[("", "protocol")] = "PalGAN paper: 256², sRGB, FID on Inception-v3"
        t.reported(row)
    models = index.models_on(labels)
    for model in models:
        cells = {lab: ev for lab in labels if (ev := index.cell(model, lab))}
        first = next(iter(cells.values()))
        row = {("", "method"): _measured_label(first, pub.PALGAN_MAIN), ("", "source"): "measured (this run)"}
        run = _run_cell(first, runs)
        row[("", "run")] = run[0]
        for lab in labels:
            ev = cells.get(lab)
            for m in list(MAIN_METRICS) + proxies[lab]:
                row[(lab, metric_label(m))] = measured_cell(ev, m, t.notes) if ev else NOT_EVALUATED
        row[("", "protocol")] = protocols_text(list(cells.values()))
        t.measured(row, run)
    caption = (
        f"Reported rows: {pub.PROTOCOLS[pub.PALGAN_MAIN]}. Measured rows: each cell from the model's record on that "
        f"column group's data set (protocol column). “{NOT_EVALUATED}”: not evaluated on that data set. ¹ automatic "
        "colorization; ², * as marked in the paper. Proxy Fréchet distances (FD-…) use a different feature network "
        "and are not FID."
    )
    if not models:
        caption += f" No model was evaluated on {', '.join(labels)}: this run's numbers are in the all-measured table."
    caption += _not_measured_note(index, pub.PALGAN_MAIN, labels)
    return t.finish("table1", "Table 1 — PalGAN main table layout (PSNR↑ SSIM↑ LPIPS↓ FID↓ per dataset)", caption)


MODE_COLUMN = ("", "generator mode")
MODE_NONE = "none"
MODE_TEXT = {
    "thesis": "train (the thesis' validation loop)",
    "eval": "eval",
    "train": "train, as the thesis",
    MODE_NONE: "— (no network)",
}


def _single_set_row(
    t: _Rows, head: dict, ev: MetricsRecord, columns: dict[tuple[str, str], str], runs: RunLinks
) -> None:
    """A measured row of a one-data-set table: identifying cells, source, run, a cell per (column → metric
    key) of ``columns``, protocol."""
    run = _run_cell(ev, runs)
    row = {**head, ("", "source"): "measured (this run)", ("", "run"): run[0]}
    row.update({column: record_cell(ev, metric, t.notes) for column, metric in columns.items()})
    row[("", "protocol")] = protocol_text(ev)
    t.measured(row, run)


def thesis_table(evals: Evals, runs: RunLinks) -> Table:
    """Table 2: the thesis' configurations ① ② ③ × FID, SSIM, PSNR, LPIPS, in two column groups: the thesis'
    own protocol (L*a*b* packed as a 3-channel tensor, LPIPS-vgg), where its reported numbers sit, and this
    run's sRGB protocol. After each configuration's reported rows, the matching model's record on Places205
    test; then other models and the gray baseline on that set."""
    index = _index(evals)
    (label,) = pub.table_datasets(pub.THESIS_TABLE)
    records = [r for r in pub.published_records() if r.table == pub.THESIS_TABLE]
    models = index.models_on((label,))
    reported_metrics = ("fid", "ssim", "psnr", "lpips")
    srgb = list(reported_metrics) + _proxies([index.cell(m, label) for m in models])
    lab_group, srgb_group = "thesis protocol: L*a*b* packed as 3 channels", "this run's protocol: sRGB uint8"
    matched = [m for m, rows in pub.MODEL_ROWS.items() if pub.THESIS_TABLE in rows]
    lab_columns = {(lab_group, metric_label(m)): THESIS_LAB[m] for m in reported_metrics}
    srgb_columns = {(srgb_group, metric_label(m)): m for m in srgb}
    t = _Rows()

    def measured_rows(head: str, ev: MetricsRecord) -> None:
        """One row per generator mode of the record: eval (sRGB and eval-mode Lab-packed numbers), then train
        (the train-mode Lab-packed numbers, as the thesis measured; sRGB is never scored in train mode)."""
        for mode in generator_modes(ev) or [MODE_NONE]:
            train = mode == "train"
            columns = {c: m + TRAIN_MODE_SUFFIX for c, m in lab_columns.items()} if train else lab_columns
            row_head = {("", "configuration"): head, MODE_COLUMN: MODE_TEXT.get(mode, mode)}
            _single_set_row(t, row_head, ev, columns | ({} if train else srgb_columns), runs)
            if train:
                t.rows[-1].update({c: NOT_EVALUATED for c in srgb_columns})

    methods = list(dict.fromkeys(r.method for r in records))
    for i, method in enumerate(methods):
        row = {("", "configuration"): method, MODE_COLUMN: MODE_TEXT["thesis"]}
        row |= {("", "source"): "reported (thesis)", ("", "run"): ""}
        for r in records:
            if r.method == method:
                row[(lab_group, metric_label(r.metric))] = fmt(r.metric, r.value, 3)
        row.update({(srgb_group, metric_label(m)): NOT_EVALUATED for m in srgb})
        row[("", "protocol")] = "Places205 test (23,797), 256², Lab packed as 3-channel (not sRGB), LPIPS vgg"
        t.reported(row)
        next_method = methods[i + 1] if i + 1 < len(methods) else None
        if next_method is not None and next_method[0] == method[0]:
            continue  # ③ has two reported rows (30/50 epochs); its measured row follows both
        for model in matched:
            if pub.paper_row(model, pub.THESIS_TABLE)[0] == method[0] and (ev := index.cell(model, label)):
                measured_rows(f"{method[0]} {ev.name}", ev)
    for model in (m for m in models if m not in matched):
        ev = index.cell(model, label)
        measured_rows(ev.label, ev)
    caption = (
        "Thesis configurations: ① GAN + 100·L1 (model pix2pix), ② GAN + 100·L1 + 0.003·CE (pix2pix_class), "
        "③ 0.1·WGAN-GP + L2 + 0.003·CE (pix2pix_wgan_class). Reported: "
        + pub.PROTOCOLS[pub.THESIS_TABLE]
        + ", the generator in train mode (the thesis' only test path, its validation loop, runs it so)"
        + f". Measured: each model's record on {label} only (protocol column), under the thesis' protocol "
        "(evaluate.lab_packed: torchmetrics PSNR over the whole set, SSIM, LPIPS-vgg and FID on L*a*b* packed as "
        "a [0, 1] 3-channel tensor — the group to compare with the reported rows) and under this run's sRGB protocol. "
        "Generator mode: eval = dropout off, BatchNorm running statistics; train = as the thesis scored (dropout on "
        "with a seeded RNG, BatchNorm over each batch, evaluate.generator_mode: the rows to hold against the "
        f"reported ones; its numbers are the record's lab_*{TRAIN_MODE_SUFFIX}). “{NOT_EVALUATED}”: not scored so."
    )
    caption += _not_measured_note(index, pub.THESIS_TABLE, (label,))
    return t.finish("table2", "Table 2 — thesis (pix2pix + classification): reported vs measured", caption)


def chromagan_table(evals: Evals, runs: RunLinks) -> Table:
    """Table 3: ChromaGAN's PSNR comparison; reported rows, then each model (and the gray baseline) evaluated on
    the same 1,000 ILSVRC2012 images."""
    index = _index(evals)
    (label,) = pub.table_datasets(pub.CHROMAGAN_PSNR)
    t = _Rows()
    for r in (r for r in pub.published_records() if r.table == pub.CHROMAGAN_PSNR):
        t.reported(
            {
                ("", "method"): r.method,
                ("", "source"): "reported (ChromaGAN paper)",
                ("", "run"): "",
                ("", "PSNR (dB)↑"): fmt("psnr", r.value),
                ("", "protocol"): "1,000 ILSVRC2012 images, 224², RGB",
            }
        )
    models = index.models_on((label,))
    for model in models:
        ev = index.cell(model, label)
        run = _run_cell(ev, runs)
        t.measured(
            {
                ("", "method"): _measured_label(ev, pub.CHROMAGAN_PSNR),
                ("", "source"): "measured (this run)",
                ("", "run"): run[0],
                ("", "PSNR (dB)↑"): measured_cell(ev, "psnr", t.notes),
                ("", "protocol"): protocol_text(ev),
            },
            run,
        )
    caption = (
        "Reported: " + pub.PROTOCOLS[pub.CHROMAGAN_PSNR] + f". Measured: each model's record on {label} only "
        "(protocol column)."
    )
    caption += _not_measured_note(index, pub.CHROMAGAN_PSNR, (label,))
    return t.finish("table3", "Table 3 — ChromaGAN PSNR comparison: reported vs measured", caption)


def ca_ablation_table(evals: Evals, runs: RunLinks) -> Table | None:
    """PalGAN's chromatic-attention ablation; None unless a CA variant other than palgan was evaluated at all.

    A variant's measured row follows its reported row and comes from its COCO-Stuff record only.
    """
    index = _index(evals)
    evaluated = {ev.name for ev in index.records}
    if not any(m in evaluated for m in pub.CA_VARIANTS if m != "palgan"):
        return None
    (label,) = pub.table_datasets(pub.PALGAN_CA)
    records = [r for r in pub.published_records() if r.table == pub.PALGAN_CA]
    measured = [ev for m in pub.CA_VARIANTS if (ev := index.cell(m, label))]
    cols = list(MAIN_METRICS) + _proxies(measured)
    t = _Rows()
    yes = lambda b: "✓" if b else "✗"  # noqa: E731
    for model, (g, l) in pub.CA_VARIANTS.items():  # noqa: E741 (g, l: the paper's G and L columns)
        method = pub.paper_row(model, pub.PALGAN_CA)
        ca = {("CA", "global"): yes(g), ("CA", "local"): yes(l)}
        row = {**ca, ("", "source"): "reported (PalGAN paper)", ("", "method"): method, ("", "run"): ""}
        for r in records:
            if r.method == method:
                row[("metrics", metric_label(r.metric))] = reported_cell(r.value, r.metric)
        row.update({("metrics", metric_label(p)): NOT_EVALUATED for p in cols[len(MAIN_METRICS) :]})
        row[("", "protocol")] = "COCO-Stuff val"
        t.reported(row)
        if ev := index.cell(model, label):
            _single_set_row(
                t, {**ca, ("", "method"): ev.name}, ev, {("metrics", metric_label(m)): m for m in cols}, runs
            )
    caption = (
        "Reported: " + pub.PROTOCOLS[pub.PALGAN_CA] + f". Measured: each variant's record on {label} only "
        "(protocol column)."
    )
    caption += _not_measured_note(index, pub.PALGAN_CA, (label,))
    return t.finish("ca_ablation", "PalGAN chromatic-attention (CA) ablation: reported vs measured", caption)


ALL_METRICS_ORDER = ("psnr", "ssim", "lpips", "fid")
COLOR_METRICS = ("cf", "cf_gt", "delta_cf")


def all_measured_table(evals: Evals, runs: RunLinks) -> Table:
    """Every record (model × evaluation set) × every metric it has, nothing dropped, grouped by set, with its
    protocol."""
    index = _index(evals)
    records = [ev for name in index.sets() for ev in index.on_set(name)]
    present = {k for ev in records for k in set(ev.metrics) | set(ev.unavailable)}
    lab = [k + mode for mode in ("", TRAIN_MODE_SUFFIX) for k in THESIS_LAB.values() if k + mode in present]
    proxies = _proxies(records)
    extra = sorted(present - set(ALL_METRICS_ORDER) - set(COLOR_METRICS) - set(proxies) - set(lab))
    cols = list(ALL_METRICS_ORDER) + proxies + list(COLOR_METRICS) + lab + extra
    t = _Rows()
    for ev in records:
        run = _run_cell(ev, runs, short=False)
        n = ev.protocol.get("n_images")
        label = set_label(ev)
        row = {
            ("", "evaluation set"): set_name(ev),
            ("", "papers' name"): label or "— (no paper uses it)",
            ("", "model"): ev.label,
            ("", "arch"): ev.arch or "—",
            ("", "run"): run[0],
            ("", "n_images"): str(n if n is not None else "?"),
        }
        for m in cols:
            row[("metrics", metric_label(m))] = record_cell(ev, m, t.notes)
        row[("", "protocol")] = protocol_text(ev)
        t.measured(row, run)
    caption = (
        "Every model on every evaluation set (measured), grouped by set; the papers' tables above show only the "
        "records on the data sets they report. Sets: "
        + "; ".join(set_title(s, index.label_of(s)) for s in index.sets())
        + ". CF: Hasler–Süsstrunk colorfulness of the predictions; ΔCF = |CF(pred) − CF(ground truth)|."
    )
    if lab:
        caption += (
            f" Lab-packed columns: the thesis' protocol, for the models evaluate.lab_packed names (and the gray "
            f"baseline beside them); “{NOT_EVALUATED}”: not scored under that protocol or generator mode."
        )
    if not t.rows:
        t.measured({("", "model"): "no evaluation/*/*/metrics.json found"}, ("", None))
        caption = "No measured record."
    return t.finish("measured", "All measured models × all metrics, per evaluation set", caption)


def build_tables(evals: Evals, runs: RunLinks) -> list[Table]:
    """All report tables in display order (the CA ablation only when its variants were trained)."""
    index = _index(evals)
    tables = [palgan_main_table(index, runs), thesis_table(index, runs), chromagan_table(index, runs)]
    ca = ca_ablation_table(index, runs)
    if ca is not None:
        tables.append(ca)
    tables.append(all_measured_table(index, runs))
    return tables


def metrics_long(evals: Evals) -> pd.DataFrame:
    """Measured metrics as a tidy frame (set, model, metric, value, n_images): the DVC plots file and the bar charts."""
    index = _index(evals)
    rows = []
    for name in index.sets():
        for ev in index.on_set(name):
            for metric, value in ev.metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    rows.append(
                        {
                            "set": name,
                            "model": ev.name,
                            "metric": metric,
                            "value": float(value),
                            "n_images": ev.protocol.get("n_images"),
                        }
                    )
    return pd.DataFrame(rows, columns=["set", "model", "metric", "value", "n_images"])
