"""The report's "Learning" section: how each model's validation scores moved during training.

Why: a final number says where a model ended, not whether it was still improving, had collapsed or
never beat the gray input. Training scores a fixed validation subset every ``train.validate_every`` steps
(``val/psnr``, ``val/lpips``…) and the gray baseline on the same images once (``val_gray/*``): drawn
together, the curve shows progress and the horizontal line shows what "no color at all" scores. Each
curve is labelled with what it cost — the training data, the steps, the images seen and the hardware —
because a curve after 12 steps on 24 crops and one after 30 epochs on Places205 look alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from chromapipe.layout import DATA_COUNTS_PARAMS, DATA_PARAMS, MODEL_PARAMS, param_key
from chromapipe.metrics.record import MetricsRecord
from chromapipe.reporting.runs import GRAY_PREFIX, VAL_PREFIX, RunInfo
from chromapipe.reporting.tables import metric_label

VAL_ORDER = ("psnr", "ssim", "lpips", "cf", "delta_cf")  # the metrics training validates, in display order
CSV_COLUMNS = ["model", "metric", "step", "value"]
_DATA_KEYS = tuple(param_key(DATA_PARAMS, k) for k in ("source", "root", "file_list"))
_SOURCE_KEY, _COUNTS = _DATA_KEYS[0], f"{DATA_COUNTS_PARAMS}."
_SPLIT_ORDER = ("train", "val", "test")


@dataclass
class LearningEntry:
    """One trained model's validation curves and the facts its figure is labelled with."""

    model: str
    run_id: str | None
    curves: pd.DataFrame  # key (val/<m> or val_gray/<m>), step, value
    training_data: str
    steps: int | None
    images_seen: int | None
    hardware: str
    validation_images: str | None  # train.validate_images, None when the run did not record it
    data_params: dict[str, str]  # every data.* and data_counts.* parameter of the run

    @property
    def metrics(self) -> list[str]:
        """The validated metrics present, VAL_ORDER first, then any other, so panels appear in a fixed order."""
        present = {k.split("/", 1)[1] for k in self.curves["key"] if k.startswith(VAL_PREFIX)}
        return [m for m in VAL_ORDER if m in present] + sorted(present - set(VAL_ORDER))

    def series(self, metric: str) -> pd.DataFrame:
        part = self.curves[self.curves["key"] == VAL_PREFIX + metric]
        return part.sort_values("step")[["step", "value"]]

    def reference(self, metric: str) -> float | None:
        """The gray baseline's value on the same validation images (logged once, at step 0)."""
        part = self.curves[self.curves["key"] == GRAY_PREFIX + metric]
        return float(part.sort_values("step")["value"].iloc[-1]) if not part.empty else None

    def panels(self) -> list[tuple[str, pd.DataFrame, float | None]]:
        """(metric label, its curve, the gray baseline's value) per validated metric: what the figure draws."""
        return [(metric_label(m), self.series(m), self.reference(m)) for m in self.metrics]

    @property
    def title(self) -> str:
        return f"{self.model} — validation during training"

    def caption(self) -> str:
        """One line of facts: the figure's subtitle and the section's table row agree on it."""
        steps = f"{self.steps:,}" if self.steps is not None else "?"
        seen = f"{self.images_seen:,}" if self.images_seen is not None else "?"
        validated = f"; validated on {self.validation_images} val images" if self.validation_images else ""
        return f"trained on {self.training_data}; {steps} steps, {seen} images seen; {self.hardware}{validated}"


def _param(params: dict[str, str], key: str) -> str | None:
    value = params.get(key)
    return None if value in (None, "", "None") else value


def _int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def training_data(params: dict[str, str]) -> str:
    """``sample_train: sample (train 24 / val 4 / test 8 images)`` or
    ``imagenet_train: folder, root=/datasets/imagenet/train, file_list=… (train 1,200 / val 64 images)``."""
    parts = [v if k == _SOURCE_KEY else f"{k.split('.')[1]}={v}" for k in _DATA_KEYS if (v := _param(params, k))]
    splits = sorted(
        (k.split(".", 1)[1] for k in params if k.startswith(_COUNTS)),
        key=lambda s: (_SPLIT_ORDER.index(s) if s in _SPLIT_ORDER else len(_SPLIT_ORDER), s),
    )
    counts = [
        f"{s} {n:,}" if (n := _int(params[_COUNTS + s])) is not None else f"{s} {params[_COUNTS + s]}" for s in splits
    ]
    text = ", ".join(parts) or "data not recorded in the run"
    if name := _param(params, "model.dataset"):  # the training dataset's name in params
        text = f"{name}: {text}"
    return text + (f" ({' / '.join(counts)} images)" if counts else "")


def hardware(params: dict[str, str], devices: list[str]) -> str:
    """Training hardware from the run's parameters, evaluation device(s) from the records' timing."""
    gpu = {"True": "GPU", "False": "CPU"}.get(_param(params, "train.use_gpu") or "")
    workers = _param(params, "train.num_workers")
    parts = [f"{workers} Ray worker(s)" if workers else "", gpu or ""]
    text = (
        "trained on " + ", ".join(p for p in parts if p) if any(parts) else "training hardware not recorded in the run"
    )
    return text + (f"; evaluated on {', '.join(devices)}" if devices else "")


def learning_entry(run: RunInfo, evals: list[MetricsRecord]) -> LearningEntry:
    """The entry for one model from its run and its evaluation records (for the evaluation device)."""
    steps = run.last_step
    batch = _int(_param(run.params, param_key(MODEL_PARAMS, "batch_size")))
    devices = list(
        dict.fromkeys(str(ev.timing["device"]) for ev in evals if ev.name == run.model and ev.timing.get("device"))
    )
    data = {k: v for k, v in sorted(run.params.items()) if k.startswith((f"{DATA_PARAMS}.", _COUNTS))}
    return LearningEntry(
        model=run.model,
        run_id=run.run_id,
        curves=run.validation,
        training_data=training_data(run.params),
        steps=steps,
        images_seen=steps * batch if steps is not None and batch is not None else None,
        hardware=hardware(run.params, devices),
        validation_images=_param(run.params, "train.validate_images"),
        data_params=data,
    )


def learning_entries(runs: dict[str, RunInfo], evals: list[MetricsRecord]) -> list[LearningEntry]:
    """Entries of the trained models whose run has validation curves (the others are in "What is missing")."""
    return [
        learning_entry(run, evals)
        for _, run in sorted(runs.items())
        if any(k.startswith(VAL_PREFIX) for k in run.validation["key"])
    ]


def validation_frame(entries: list[LearningEntry]) -> pd.DataFrame:
    """Every curve point (model, metric, step, value): ``reports/plots/validation.csv``."""
    parts = [e.curves.rename(columns={"key": "metric"}).assign(model=e.model) for e in entries if not e.curves.empty]
    if not parts:
        return pd.DataFrame(columns=CSV_COLUMNS)
    frame = pd.concat(parts, ignore_index=True)[CSV_COLUMNS]
    return frame.sort_values(["model", "metric", "step"], kind="stable").reset_index(drop=True)
