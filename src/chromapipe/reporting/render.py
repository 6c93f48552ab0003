"""Writes ``results.md`` and an offline ``index.html`` (plus DVC-plots CSVs) from the assembled report data.

Why hand-written HTML: the page must open from a file:// URL on an air-gapped machine — no CDN script,
no web font, no template engine the project does not declare. Inline CSS, plain tables with two header
rows (column group, column), and images as PNG files in ``figures/`` referenced relatively, so the
directory can be copied or archived as a whole. Reported and measured rows are styled apart, and the
source is also spelled out in each row, so the distinction survives printing and Markdown.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from chromapipe.reporting.learning import LearningEntry
from chromapipe.reporting.runs import UI_ADDRESS, RunInfo
from chromapipe.reporting.tables import MEASURED, Table, fmt


@dataclass
class FigureRef:
    title: str
    path: str  # relative to the report directory, forward slashes
    caption: str


@dataclass
class ReportData:
    """Everything the renderer needs; assembled by ``report.build_report``."""

    tables: list[Table]
    figures: list[FigureRef]
    runs: dict[str, RunInfo]
    missing: list[str]  # human-readable notes of what could not be included, and why
    sources: dict[str, str]  # "evaluation", "tracking_uri", … -> where the data came from
    protocols: list[tuple[str, str, dict[str, Any]]]  # ("model on set", protocol text, details)
    plots: dict[str, pd.DataFrame] = field(default_factory=dict)  # file name under plots/ -> data
    learning: list[tuple[LearningEntry, FigureRef | None]] = field(default_factory=list)  # per trained model
    #: per paper table (its title): the open choices its measured numbers rest on, one line each
    open_choices: list[tuple[str, list[str]]] = field(default_factory=list)


OPEN_CHOICES_INTRO = (
    "Where the papers leave a setting open or this run departs from them, the choice is ours: params' ours: notes "
    "(datasets, models, train) and the choices a trained model made at run time. Each table's measured numbers "
    "rest on these."
)


LEARNING_INTRO = (
    "Validation during training: every train.validate_every steps, training scores the model on a fixed subset "
    "of the val split (MLflow val/*); the dashed line is the gray input (ab = 0) on the same images (val_gray/*, "
    "logged once). Images seen = last step × model.batch_size (the global batch). These images are not the "
    "evaluation sets of the tables."
)
LEARNING_COLUMNS = ("model", "run", "training data", "steps", "images seen", "hardware", "last validation (gray input)")


def last_validation(entry: LearningEntry) -> str:
    """``PSNR 22.10 (21.50), LPIPS 0.180 (0.251)``: where each curve ended, beside the gray baseline."""
    parts = []
    for m in entry.metrics:
        series = entry.series(m)
        ref = entry.reference(m)
        name = {"psnr": "PSNR", "ssim": "SSIM", "lpips": "LPIPS", "cf": "CF", "delta_cf": "ΔCF"}.get(m, m)
        parts.append(
            f"{name} {fmt(m, float(series['value'].iloc[-1]))}" + (f" ({fmt(m, ref)})" if ref is not None else "")
        )
    return ", ".join(parts)


def learning_row(entry: LearningEntry) -> list[str]:
    """The Learning table's cells for one model, in LEARNING_COLUMNS order."""
    return [
        entry.model,
        entry.run_id or "—",
        entry.training_data,
        f"{entry.steps:,}" if entry.steps is not None else "?",
        f"{entry.images_seen:,}" if entry.images_seen is not None else "?",
        entry.hardware,
        last_validation(entry),
    ]


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1400px;
 padding:0 1rem;color:#1d1d1f;line-height:1.45}
h1{font-size:1.7rem;margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.meta{color:#555;font-size:.9rem}.caption{font-size:.9rem;color:#333;max-width:1100px}
.scroll{overflow-x:auto;margin:.6rem 0}
table{border-collapse:collapse;font-size:.82rem;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d0d0;padding:.25rem .45rem;text-align:left;vertical-align:top;white-space:nowrap}
td.wrap{white-space:normal;min-width:22rem;max-width:40rem}td.na{white-space:normal;min-width:7rem;max-width:11rem;color:#8a4b00}
thead th{background:#f0f2f5;position:sticky;top:0}th.group{text-align:center;background:#e3e7ee}
tr.reported td{background:#fafafa;color:#333}tr.measured td{background:#eef6ee}
tr.measured td:first-child{border-left:4px solid #3a8a3a}tr.reported td:first-child{border-left:4px solid #999}
.legend span{display:inline-block;padding:.1rem .5rem;margin-right:.6rem;font-size:.8rem}
.legend .r{background:#fafafa;border-left:4px solid #999}.legend .m{background:#eef6ee;border-left:4px solid #3a8a3a}
ol.notes{font-size:.8rem;color:#444}ul.missing li{color:#8a4b00}
figure{margin:1rem 0}figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.85rem;color:#444}
code,pre{font-size:.8rem;background:#f6f8fa}pre{padding:.5rem;overflow-x:auto;white-space:pre-wrap}
nav a{margin-right:1rem}
"""


def _columns(table: Table) -> list[tuple[str, str]]:
    return [tuple(c) for c in table.frame.columns]


def _flat(col: tuple[str, str]) -> str:
    group, name = col
    return f"{group} · {name}" if group and group not in ("", "metrics") else name


# ---------------------------------------------------------------------- Markdown


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table_markdown(table: Table) -> str:
    cols = _columns(table)
    lines = [f"### {table.title}", "", table.caption, ""]
    lines.append("| " + " | ".join(_md_escape(_flat(c)) for c in cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for i, (_, row) in enumerate(table.frame.iterrows()):
        cells = []
        for col in cols:
            text = _md_escape(row[col])
            url = table.links.get((i, col[1]))
            cells.append(f"[{text}]({url})" if url else text)
        lines.append("| " + " | ".join(cells) + " |")
    if table.footnotes:
        lines.append("")
        lines += [f"[{k}] {_md_escape(note)}  " for k, note in enumerate(table.footnotes, 1)]
    return "\n".join(lines) + "\n"


def render_markdown(data: ReportData) -> str:
    out = ["# chromapipe — colorization results", ""]
    out.append(
        "Rows marked *reported* are the papers' published numbers under the papers' protocols; rows marked "
        "*measured* were computed by this run under this run's protocol. The two are never mixed in one cell "
        "and are not directly comparable."
    )
    out.append("")
    out += [f"- {k}: `{v}`" for k, v in data.sources.items()]
    if data.missing:
        out += ["", "## What is missing", ""] + [f"- {_md_escape(m)}" for m in data.missing]
    out += ["", "## Tables", ""]
    for t in data.tables:
        out += [table_markdown(t), ""]
    out += ["## Figures", ""]
    for f in data.figures:
        out += [f"### {f.title}", "", f"![{f.title}]({f.path})", "", f.caption, ""]
    out += ["## Learning", "", LEARNING_INTRO, ""]
    if not data.learning:
        out += ["No model has validation curves in MLflow (see “What is missing”).", ""]
    else:
        out += ["| " + " | ".join(LEARNING_COLUMNS) + " |", "|" + "---|" * len(LEARNING_COLUMNS)]
        out += ["| " + " | ".join(_md_escape(c) for c in learning_row(e)) + " |" for e, _ in data.learning]
        out.append("")
        for _entry, fig in data.learning:
            if fig is not None:
                out += [f"### {fig.title}", "", f"![{fig.title}]({fig.path})", "", fig.caption, ""]
    out += ["## MLflow runs", "", "| model | run | note |", "|---|---|---|"]
    for model, run in sorted(data.runs.items()):
        link = f"[{run.run_id}]({run.url})" if run.url else (run.run_id or "—")
        out.append(f"| {_md_escape(model)} | {link} | {_md_escape(run.note)} |")
    out += ["", "## Protocols", "", "### Open choices per table", "", OPEN_CHOICES_INTRO, ""]
    for title, lines in data.open_choices:
        out += [f"**{title}**", ""] + ([f"- {_md_escape(line)}" for line in lines] or ["- none recorded"]) + [""]
    out += ["### Each record's protocol", ""]
    for model, text, details in data.protocols:
        out.append(
            f"- **{model}**: {_md_escape(text)}"
            + (f"; details: `{_md_escape(_details_text(details))}`" if details else "")
        )
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------- HTML


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def table_html(table: Table) -> str:
    cols = _columns(table)
    groups: list[tuple[str, int]] = []
    for group, _ in cols:
        if groups and groups[-1][0] == group:
            groups[-1] = (group, groups[-1][1] + 1)
        else:
            groups.append((group, 1))
    parts = [
        f'<section id="{_e(table.key)}"><h3>{_e(table.title)}</h3>',
        f'<p class="caption">{_e(table.caption)}</p>',
        '<div class="scroll"><table>',
        "<thead>",
    ]
    if any(g for g, _ in groups):
        parts.append(
            "<tr>"
            + "".join(
                f'<th class="group" colspan="{n}">{_e(g)}</th>' if g else f'<th colspan="{n}"></th>' for g, n in groups
            )
            + "</tr>"
        )
    parts.append("<tr>" + "".join(f'<th scope="col">{_e(name)}</th>' for _, name in cols) + "</tr></thead><tbody>")
    for i, (_, row) in enumerate(table.frame.iterrows()):
        kind = table.kinds[i] if i < len(table.kinds) else MEASURED
        cells = []
        for col in cols:
            text = row[col]
            url = table.links.get((i, col[1]))
            inner = f'<a href="{_e(url)}" title="{_e(url)}">{_e(text)}</a>' if url else _e(text)
            cls = ' class="wrap"' if col[1] == "protocol" else ' class="na"' if text.lower().startswith("n/a") else ""
            cells.append(f"<td{cls}>{inner}</td>")
        parts.append(f'<tr class="{_e(kind)}">' + "".join(cells) + "</tr>")
    parts.append("</tbody></table></div>")
    if table.footnotes:
        parts.append('<ol class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in table.footnotes) + "</ol>")
    parts.append("</section>")
    return "\n".join(parts)


def _details_text(details: dict[str, Any]) -> str:
    items = []
    for key, value in details.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        items.append(f"{key}: {value}")
    return "; ".join(items)


def _figure_html(f: FigureRef) -> str:
    return (
        f'<figure><h3>{_e(f.title)}</h3><img src="{_e(f.path)}" alt="{_e(f.title)}">'
        f"<figcaption>{_e(f.caption)}</figcaption></figure>"
    )


def learning_html(learning: list[tuple[LearningEntry, FigureRef | None]]) -> str:
    """The Learning section: one table row of facts per trained model, each model's curves, its data parameters."""
    p = ['<section id="learning"><h2>Learning</h2>', f'<p class="caption">{_e(LEARNING_INTRO)}</p>']
    if not learning:
        p.append("<p>No model has validation curves in MLflow (see “What is missing”).</p></section>")
        return "\n".join(p)
    p.append(
        '<div class="scroll"><table><thead><tr>'
        + "".join(f"<th>{_e(c)}</th>" for c in LEARNING_COLUMNS)
        + "</tr></thead><tbody>"
    )
    for entry, _ in learning:
        cells = learning_row(entry)
        p.append(
            '<tr class="measured">'
            + "".join(
                f'<td class="wrap">{_e(c)}</td>' if i in (2, 5, 6) else f"<td>{_e(c)}</td>" for i, c in enumerate(cells)
            )
            + "</tr>"
        )
    p.append("</tbody></table></div>")
    for entry, fig in learning:
        if fig is not None:
            p.append(_figure_html(fig))
        if entry.data_params:
            p.append(
                f"<details><summary>{_e(entry.model)}: data parameters of the run</summary><pre>"
                + _e("\n".join(f"{k} = {v}" for k, v in entry.data_params.items()))
                + "</pre></details>"
            )
    p.append("</section>")
    return "\n".join(p)


def render_html(data: ReportData) -> str:
    p = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>chromapipe — colorization results</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>chromapipe — colorization results</h1>",
        "<p class=\"meta\">Rows marked <em>reported</em> are the papers' published numbers under the papers' "
        "protocols; rows marked <em>measured</em> were computed by this run under this run's protocol. "
        "The two never share a cell and are not directly comparable.</p>",
        '<p class="legend"><span class="r">reported (paper)</span><span class="m">measured (this run)</span></p>',
        '<ul class="meta">'
        + "".join(f"<li>{_e(k)}: <code>{_e(v)}</code></li>" for k, v in data.sources.items())
        + "</ul>",
    ]
    nav = [f'<a href="#{_e(t.key)}">{_e(t.title.split(" — ")[0])}</a>' for t in data.tables]
    nav += [
        '<a href="#figures">Figures</a>',
        '<a href="#learning">Learning</a>',
        '<a href="#runs">MLflow runs</a>',
        '<a href="#protocols">Protocols</a>',
    ]
    p.append("<nav>" + "".join(nav) + "</nav>")
    if data.missing:
        p.append(
            '<section id="missing"><h2>What is missing</h2><ul class="missing">'
            + "".join(f"<li>{_e(m)}</li>" for m in data.missing)
            + "</ul></section>"
        )
    p.append('<h2 id="tables">Tables</h2>')
    p += [table_html(t) for t in data.tables]
    p.append('<section id="figures"><h2>Figures</h2>')
    if not data.figures:
        p.append("<p>No figure could be drawn (see “What is missing”).</p>")
    p += [_figure_html(f) for f in data.figures]
    p.append("</section>")
    p.append(learning_html(data.learning))
    p.append(
        '<section id="runs"><h2>MLflow runs</h2><p class="caption">Open with <code>make ui</code> '
        f"({_e(UI_ADDRESS)}).</p><table><thead><tr><th>model</th><th>run</th><th>experiment</th><th>status</th>"
        "<th>note</th></tr></thead><tbody>"
    )
    for model, run in sorted(data.runs.items()):
        link = f'<a href="{_e(run.url)}">{_e(run.run_id)}</a>' if run.url else _e(run.run_id or "—")
        p.append(
            f"<tr><td>{_e(model)}</td><td>{link}</td><td>{_e(run.experiment_id or '—')}</td>"
            f'<td>{_e(run.status or "—")}</td><td class="wrap">{_e(run.note)}</td></tr>'
        )
    p.append("</tbody></table></section>")
    p.append('<section id="protocols"><h2>Protocols</h2><h3 id="open-choices">Open choices per table</h3>')
    p.append(f'<p class="caption">{_e(OPEN_CHOICES_INTRO)}</p>')
    for title, lines in data.open_choices:
        items = "".join(f"<li>{_e(line)}</li>" for line in lines) or "<li>none recorded</li>"
        p.append(f"<h4>{_e(title)}</h4><ul>{items}</ul>")
    p.append(
        "<h3>Each record's protocol</h3><table><thead><tr><th>model on set</th><th>protocol</th>"
        "<th>details</th></tr></thead><tbody>"
    )
    for model, text, details in data.protocols:
        summary = ", ".join(details) or "none recorded"
        p.append(
            f'<tr><td>{_e(model)}</td><td class="wrap">{_e(text)}</td><td class="wrap"><details><summary>{_e(summary)}'
            f"</summary><pre>{_e(json.dumps(details, indent=1, ensure_ascii=False, default=str))}</pre>"
            "</details></td></tr>"
        )
    p.append("</tbody></table></section></body></html>")
    return "\n".join(p) + "\n"


def write_report(data: ReportData, out: Path) -> Path:
    """Write results.md, index.html and plots/*.csv under ``out``; return the index.html path."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(render_markdown(data), encoding="utf-8")
    index = out / "index.html"
    index.write_text(render_html(data), encoding="utf-8")
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    for name, frame in data.plots.items():
        frame.to_csv(plots / name, index=False)
    return index
