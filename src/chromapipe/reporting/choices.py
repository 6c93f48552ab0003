"""The open choices behind each paper table: where this run decided what the paper leaves open or states otherwise.

Why: a measured number beside a paper's is only as comparable as its protocol, and the protocol's gaps (how a
photo becomes 256², which classifier stood in for VGG16) are ours, not the paper's. They are data, not prose:
``ours:`` notes on a dataset, a model or the training set-up in params (setting -> why), and the run-time
choices a trained model recorded (``MetricsRecord.ours``: e.g. the KL teacher its machine had). This module
gathers, per paper table, the notes of what that table's numbers rest on: the models with a row in it, their
training sets, its evaluation sets, the training set-up, and those models' records on its data sets. Identical
notes on several datasets or models are listed once, with every key they are on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chromapipe.config import Params, to_dict
from chromapipe.reporting import published as pub
from chromapipe.reporting.evalsets import EvalIndex

#: the paper tables, in report order, with the title the report gives each
TABLES = {
    pub.PALGAN_MAIN: "Table 1 — PalGAN main table",
    pub.THESIS_TABLE: "Table 2 — thesis",
    pub.CHROMAGAN_PSNR: "Table 3 — ChromaGAN PSNR",
    pub.PALGAN_CA: "PalGAN CA ablation",
}


@dataclass(frozen=True)
class OpenChoice:
    """One open choice: the params keys it is on (or the records it comes from), the value there, and why."""

    keys: tuple[str, ...]
    value: str
    why: str

    def text(self) -> str:
        value = f" = {self.value}" if self.value else ""
        return f"{', '.join(self.keys)}{value}: {self.why}"


def _value(section: Any, setting: str) -> str:
    """The setting's value as params hold it (``options.teacher`` looks into the options mapping); "" if unset."""
    head, _, rest = setting.partition(".")
    value: Any = to_dict(getattr(section, head, None))
    for part in rest.split(".") if rest else []:
        value = value.get(part) if isinstance(value, dict) else None
    if value is None or value == {} or value == []:
        return ""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
    return str(value)


def table_members(params: Params, index: EvalIndex, table: str) -> tuple[list[str], list[str]]:
    """(models, datasets) a table's numbers rest on: models with a row in it (in params) or a record on its data
    sets; their training sets and the evaluation sets that carry its data sets' labels."""
    labels = pub.table_datasets(table)
    models = [m for m in params.models if pub.paper_row(m, table)]
    models += [m for m in index.models_on(labels) if m in params.models and m not in models]
    datasets = [d for m in models if (d := params.model(m).dataset) in params.datasets]
    datasets += [n for n, d in params.datasets.items() if d.label in labels]
    return models, list(dict.fromkeys(datasets))


def open_choices(params: Params, index: EvalIndex, table: str) -> list[OpenChoice]:
    """The open choices behind ``table``'s measured numbers, params notes first, then run-time ones."""
    models, datasets = table_members(params, index, table)
    if not models:
        return []
    grouped: dict[tuple[str, str, str], list[str]] = {}
    sections = [(f"datasets.{n}", params.dataset(n)) for n in datasets]
    sections += [(f"models.{m}", params.model(m)) for m in models]
    sections += [("train", params.train)]
    for prefix, section in sections:
        for setting, why in section.ours.items():
            grouped.setdefault((setting, _value(section, setting), " ".join(why.split())), []).append(prefix)
    choices = [
        OpenChoice(tuple(f"{p}.{setting}" for p in prefixes), value, why)
        for (setting, value, why), prefixes in grouped.items()
    ]
    run_time: dict[str, list[str]] = {}
    labels = pub.table_datasets(table)
    for model in models:
        for label in labels:
            ev = index.cell(model, label)
            for note in ev.ours if ev is not None else []:
                names = run_time.setdefault(note, [])
                if f"{model} (trained model)" not in names:
                    names.append(f"{model} (trained model)")
    choices += [OpenChoice(tuple(names), "", note) for note, names in run_time.items()]
    return choices


def choices_by_table(params: Params, index: EvalIndex) -> list[tuple[str, list[OpenChoice]]]:
    """Every paper table's open choices, in report order (a table none of whose models is in params: none)."""
    return [(title, open_choices(params, index, table)) for table, title in TABLES.items()]
