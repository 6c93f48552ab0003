"""Each model's MLflow run as the report needs it: link, loss history, validation curves, parameters.

Why read MLflow and not files: training logs its losses, its validation scores (``val/*`` every
``train.validate_every`` steps, and the gray baseline's ``val_gray/*`` once at step 0) and its parameters
(``model.*``, ``train.*``, ``data.*``, ``data_counts.*``) only there. Every failure — no store, a store
that cannot be opened, a run id the store does not know, a run without validation — leaves the report
buildable and is returned as a note for the "What is missing" list. The report never creates a store.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from chromapipe.layout import LOSS_METRICS, MODEL_TAG, VAL_GRAY_METRIC, VAL_METRIC
from chromapipe.metrics.record import MetricsRecord

UI_ADDRESS = "http://127.0.0.1:5000"  # `make ui` (mlflow ui on the project's store)
LOSS_KEYS = LOSS_METRICS
VAL_PREFIX, GRAY_PREFIX = VAL_METRIC, VAL_GRAY_METRIC
NOT_CURVES = ("seconds",)  # val/seconds is the validation's cost, not a score
HISTORY_COLUMNS = ["key", "step", "value"]


def _empty() -> pd.DataFrame:
    return pd.DataFrame(columns=HISTORY_COLUMNS)


@dataclass
class RunInfo:
    """What the report knows about one model's MLflow run; ``note`` says why something is absent."""

    model: str
    run_id: str | None = None
    experiment_id: str | None = None
    status: str | None = None
    note: str = ""
    history: pd.DataFrame = field(default_factory=_empty)  # train/g_total, train/d_total
    validation: pd.DataFrame = field(default_factory=_empty)  # val/<metric> by step, val_gray/<metric> at step 0
    params: dict[str, str] = field(default_factory=dict)  # the run's parameters, flattened (data.source, …)
    validation_note: str = ""  # why there are no (or incomplete) validation curves
    evaluated: bool = True  # False: a model of params.yaml without evaluation records (its run found by tag)

    @property
    def url(self) -> str | None:
        if self.run_id and self.experiment_id is not None:
            return f"{UI_ADDRESS}/#/experiments/{self.experiment_id}/runs/{self.run_id}"
        return None

    @property
    def last_step(self) -> int | None:
        """The last step anything was logged at (losses or validation): how far training got."""
        steps = pd.concat([self.history["step"], self.validation["step"]], ignore_index=True)
        return int(steps.max()) if not steps.empty else None


def _sqlite_file(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :].split("?")[0])


def _model_runs(evals: list[MetricsRecord], missing: list[str], models: Iterable[str] = ()) -> dict[str, RunInfo]:
    """One RunInfo per model (evaluated, or only configured: its run is then found by tag); records of one model
    naming different runs are noted (the first one is used)."""
    runs: dict[str, RunInfo] = {m: RunInfo(m, evaluated=False) for m in models}
    ids: dict[str, list[str]] = {}
    for ev in evals:
        runs.setdefault(ev.name, RunInfo(ev.name)).evaluated = True
        if ev.run_id and ev.run_id not in ids.setdefault(ev.name, []):
            ids[ev.name].append(ev.run_id)
    for model, found in ids.items():
        runs[model].run_id = found[0]
        if len(found) > 1:
            missing.append(
                f"{model}: its evaluation sets name different MLflow runs ({', '.join(found)}): they were "
                f"evaluated with different generators; links and curves use {found[0]}."
            )
    return runs


def load_runs(
    uri: str, experiment_name: str, evals: list[MetricsRecord], missing: list[str], models: Iterable[str] = ()
) -> dict[str, RunInfo]:
    """The MLflow run, loss history, validation curves and parameters of each evaluated model and of each of
    ``models`` (trained models not evaluated yet still have learning curves)."""
    runs = _model_runs(evals, missing, models)
    baselines = {ev.name for ev in evals if ev.is_baseline}
    db = _sqlite_file(uri)
    if db is not None and not db.is_file():  # never let MlflowClient create an empty store as a side effect
        missing.append(f"MLflow store not found ({uri}): no run links, no training or validation curves.")
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
    for model, run in runs.items():
        if model in baselines and not run.run_id:
            run.note = "baseline: no training run"
            continue
        try:
            _fill_run(client, experiment, run)
        except Exception as exc:  # noqa: BLE001
            run.note = f"MLflow error: {type(exc).__name__}: {exc}"
        if run.note and not run.note.startswith("run id not in metrics.json; found"):
            missing.append(f"{model}: {run.note}.")
        if run.validation_note:
            missing.append(f"{model}: {run.validation_note}.")
    return runs


def _fill_run(client, experiment, run: RunInfo) -> None:
    from mlflow.exceptions import MlflowException

    if not run.run_id:
        found = []
        if experiment is not None:
            found = client.search_runs(
                [experiment.experiment_id],
                filter_string=f"tags.`{MODEL_TAG}` = '{run.model}'",
                order_by=["attributes.start_time DESC"],
                max_results=1,
            )
        if not found:
            run.note = (
                "no MLflow run: metrics.json has no run_id and no run is tagged with this model"
                if run.evaluated
                else "not evaluated and no MLflow run is tagged with this model (not trained yet?)"
            )
            return
        run.run_id = found[0].info.run_id
        run.note = "run id not in metrics.json; found by the chromapipe.model tag (latest run)"
    try:
        mlrun = client.get_run(run.run_id)
    except MlflowException:
        run.note = f"run {run.run_id} is not in the MLflow store: no link, no training or validation curves"
        return
    run.experiment_id, run.status = mlrun.info.experiment_id, mlrun.info.status
    run.params = dict(mlrun.data.params)
    run.history = _histories(client, run.run_id, LOSS_KEYS)
    if run.history.empty:
        run.note = (run.note + "; " if run.note else "") + "run has no train/g_total or train/d_total history"
    run.validation = _histories(client, run.run_id, validation_keys(mlrun.data.metrics))
    run.validation_note = validation_gap(run.run_id, run.validation, run.params)


def validation_keys(latest: dict[str, float]) -> list[str]:
    """The run's ``val/*`` and ``val_gray/*`` score keys (not ``val/seconds``), as logged."""
    return sorted(k for k in latest if k.startswith((VAL_PREFIX, GRAY_PREFIX)) and k.split("/", 1)[1] not in NOT_CURVES)


def _histories(client, run_id: str, keys) -> pd.DataFrame:
    rows = [
        {"key": key, "step": m.step, "value": m.value} for key in keys for m in client.get_metric_history(run_id, key)
    ]
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS) if rows else _empty()


def validation_gap(run_id: str, validation: pd.DataFrame, params: dict[str, str]) -> str:
    """Why a run's learning curves are absent or lack their reference lines ("" when complete)."""
    keys = set(validation["key"])
    has_val = any(k.startswith(VAL_PREFIX) for k in keys)
    has_gray = any(k.startswith(GRAY_PREFIX) for k in keys)
    every = params.get("train.validate_every")
    if not has_val:
        why = (
            "validation was off (train.validate_every = 0)"
            if every in ("0", "None")
            else "trained without validation during training, or the run stopped before its first validation"
        )
        return f"MLflow run {run_id} has no val/* metrics ({why}): no learning curves"
    if not has_gray:
        return (
            f"MLflow run {run_id} has val/* but no val_gray/* metrics: "
            "learning curves without the gray baseline's lines"
        )
    return ""
