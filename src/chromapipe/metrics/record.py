"""The evaluation record: what ``evaluation/<name>/metrics.json`` holds, as one typed, torch-free class.

The evaluate stage writes it and the report reads it (without importing torch), so both agree on one
format. Reading is lenient — a hand-edited or older file with missing parts still loads, and the report
says what is missing instead of failing. ``summary.json`` beside it holds the numbers alone, which is
what ``dvc metrics show/diff`` compares.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chromapipe.config import GRAY  # noqa: F401 - the baseline's name lives in the leaf; re-exported here
from chromapipe.layout import METRICS_FILE, SUMMARY_FILE

MEASURED = "measured"
BASELINE = "baseline"
#: the key suffix of every number measured with the generator in train mode (``lab_psnr_trainmode``): the
#: evaluate stage writes it (``evaluation/train_mode.py``) and the torch-free report reads it
TRAIN_MODE_SUFFIX = "_trainmode"


@dataclass
class MetricsRecord:
    """One model (or the gray baseline) scored on one evaluation set under one protocol."""

    name: str
    arch: str = ""
    kind: str = MEASURED  # MEASURED or BASELINE
    run_id: str | None = None
    protocol: dict[str, Any] = field(default_factory=dict)  # dataset, split, n_images, resolution, ...
    metrics: dict[str, float | None] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # metric -> why it is None
    details: dict[str, Any] = field(default_factory=dict)  # metric -> implementation, weights, n_samples
    timing: dict[str, Any] = field(default_factory=dict)
    #: the open choices the trained model made at run time where its paper says otherwise or nothing (e.g. the KL
    #: teacher that stood in for VGG16): the report lists them with the params' own ``ours`` notes
    ours: list[str] = field(default_factory=list)
    path: Path | None = None  # the directory it was read from (not written)

    # ------------------------------------------------------------------------------------------ reading
    @classmethod
    def from_json(cls, data: dict[str, Any], name: str, path: Path | None = None) -> MetricsRecord:
        """Parse a metrics.json mapping; ``name`` (the directory name) stands in for a missing ``model``."""

        def mapping(key: str) -> dict:
            value = data.get(key)
            return dict(value) if isinstance(value, dict) else {}

        kind = str(data.get("kind") or MEASURED)
        return cls(
            name=str(data.get("model") or name),
            arch=str(data.get("arch") or ""),
            kind=BASELINE if name == GRAY else kind,
            run_id=data.get("run_id") or None,
            protocol=mapping("protocol"),
            metrics=mapping("metrics"),
            unavailable={str(k): str(v) for k, v in mapping("unavailable").items()},
            details=mapping("details"),
            timing=mapping("timing"),
            ours=[str(o) for o in data.get("ours") or [] if isinstance(data.get("ours"), list)],
            path=path,
        )

    @classmethod
    def read(cls, directory: Path) -> MetricsRecord:
        """``<directory>/metrics.json``; raises OSError/ValueError for a missing or malformed file."""
        data = json.loads((directory / METRICS_FILE).read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("top level is not a JSON object")
        return cls.from_json(data, directory.name, directory)

    # ------------------------------------------------------------------------------------------ writing
    def to_json(self) -> dict[str, Any]:
        """The ARCHITECTURE.md layout; non-finite numbers become null (JSON has no NaN)."""
        clean = {k: (v if v is None or math.isfinite(v) else None) for k, v in self.metrics.items()}
        return {
            "model": self.name,
            "arch": self.arch,
            "kind": self.kind,
            "run_id": self.run_id,
            "protocol": self.protocol,
            "metrics": clean,
            "unavailable": self.unavailable,
            "details": self.details,
            "timing": self.timing,
            "ours": self.ours,
        }

    def summary(self) -> dict[str, float]:
        """The numbers alone (what ``dvc metrics`` compares): every computed metric and the image count."""
        return {k: v for k, v in self.to_json()["metrics"].items() if v is not None} | {
            "n_images": self.protocol.get("n_images")
        }

    def write(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / METRICS_FILE).write_text(json.dumps(self.to_json(), indent=1, default=str))
        (directory / SUMMARY_FILE).write_text(json.dumps(self.summary(), indent=1))

    # ------------------------------------------------------------------------------------------ queries
    @property
    def dataset(self) -> str:
        """The evaluation set's name in params (``protocol.dataset``), else the directory it was read from."""
        return str(self.protocol.get("dataset") or (self.path.name if self.path else ""))

    @property
    def is_baseline(self) -> bool:
        return self.kind == BASELINE or self.name == GRAY

    @property
    def label(self) -> str:
        return "gray input (ab = 0) baseline" if self.is_baseline else self.name

    def n_samples(self, metric: str) -> int | None:
        """Images behind a metric: the metric's own detail if it has one, else the protocol's n_images."""
        detail = self.details.get(metric)
        for source in (detail if isinstance(detail, dict) else {}, self.protocol):
            for key in ("n_samples", "n_images"):
                if isinstance(source.get(key), (int, float)) and not isinstance(source.get(key), bool):
                    return int(source[key])
        return None

    def proxies(self) -> list[str]:
        return sorted(k for k in set(self.metrics) | set(self.unavailable) if is_proxy(k))


def is_proxy(metric: str) -> bool:
    """``fd_<net>``: a Fréchet distance on a non-Inception network — a proxy, never FID."""
    return metric.startswith("fd_")
