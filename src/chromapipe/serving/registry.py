"""Each trained generator as a version of ``chromapipe-<model>`` in the MLflow Model Registry.

Why: "which generator is the one we trust" must not live in people's heads. Every configuration the train
stage finishes becomes one registered version whose source is the pyfunc logged into its training run
(:mod:`chromapipe.serving.pyfunc`), tagged with what it is (model, arch, config hash, dataset, and the data
and code fingerprints the train stage hashed into the config hash, from ``train.json``); the evaluate stage
adds its numbers per (set, metric) with their protocol. Aliases say which version is which: ``@candidate``
is moved by the pipeline to the version it registered last (the generator now in ``models/<model>/``),
``@champion`` only by a person (``chromapipe promote``).

Idempotent by run: a run is logged as an MLflow model once (the run's ``chromapipe.logged_model`` tag keeps
its id) and registered once (a version is found again by its run id), so rerunning the stage — or a train
stage that restored a finished configuration from MLflow — adds no version; it only moves ``@candidate``
back to that run's version.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from chromapipe.config import Params, tracking_uri
from chromapipe.layout import (
    ARCH_TAG,
    CANDIDATE_ALIAS,
    CODE_FINGERPRINT_TAG,
    CONFIG_HASH_TAG,
    DATA_FINGERPRINT_TAG,
    DATASET_TAG,
    LOGGED_MODEL_TAG,
    MODEL_TAG,
    mlflow_store,
    registered_model_name,
)
from chromapipe.serving.versions import client_for, find_version

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Registration:
    """A project model's registered version (``registry/<model>.json``)."""

    model: str
    registered_model: str
    version: int
    model_uri: str  # models:/chromapipe-<model>/<version>
    logged_model: str  # models:/<logged model id>: the pyfunc in the training run
    run_id: str
    config_hash: str
    new: bool  # registered by this call (False: the run's version existed)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _ensure_registered_model(client: MlflowClient, name: str, model: str) -> None:
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name,
            tags={MODEL_TAG: model},
            description=(
                f"Every trained generator of the chromapipe model {model!r}, one version per training run. "
                f"@{CANDIDATE_ALIAS}: the version the pipeline registered last; @champion: set by a person "
                "(`chromapipe promote`)."
            ),
        )


def _logged_model_uri(client: MlflowClient, run_id: str) -> str | None:
    """The pyfunc this run already holds (its id is the run's tag), if it was logged completely."""
    model_id = client.get_run(run_id).data.tags.get(LOGGED_MODEL_TAG)
    if not model_id:
        return None
    try:
        logged = client.get_logged_model(model_id)
    except MlflowException:
        return None
    return f"models:/{model_id}" if str(logged.status).endswith("READY") else None


def _log_model(uri: str, run_id: str, generator_file: Path, info: dict[str, Any]) -> str:
    """Log the generator into its run as the pyfunc; returns its ``models:/<id>`` URI."""
    import mlflow

    from chromapipe.serving.pyfunc import log_colorizer_model
    from chromapipe.training.export import preprocessing_spec

    cfg = info["config"]
    has_palette = _has_palette(cfg)
    metadata = {
        "model": info["name"],
        "arch": cfg.arch,
        "resolution": cfg.resolution,
        "preprocessing": preprocessing_spec(cfg, info["meta"].get("describe", {})),
    }
    with mlflow_store(uri), mlflow.start_run(run_id=run_id):
        model_info = log_colorizer_model(generator_file, info, has_palette, metadata)
    client_for(uri).set_tag(run_id, LOGGED_MODEL_TAG, model_info.model_id)
    return f"models:/{model_info.model_id}"


def _has_palette(cfg: Any) -> bool:
    from chromapipe.models.registry import recipe_class

    return bool(recipe_class(cfg.arch).has_palette)


def register_generator(
    uri: str, model: str, run_id: str, config_hash: str, generator_file: Path, tags: dict[str, str]
) -> Registration:
    """Log (once) and register (once) the generator ``run_id`` trained as a version of ``chromapipe-<model>``,
    tag it, and point ``@candidate`` at it."""
    from chromapipe.models.checkpoint import load_generator

    client = client_for(uri)
    name = registered_model_name(model)
    version = find_version(client, name, run_id)
    if version is None:
        _, _, info = load_generator(generator_file, "cpu")
        if info["meta"].get("run_id") not in (None, run_id):
            raise RuntimeError(
                f"{generator_file} was trained in MLflow run {info['meta']['run_id']}, not {run_id}: "
                "models/ and train.json disagree; rerun the train stage"
            )
        _ensure_registered_model(client, name, model)
        source = _logged_model_uri(client, run_id) or _log_model(uri, run_id, generator_file, info)
        steps = info["meta"].get("steps")
        with mlflow_store(uri):  # the registry resolves a models:/<id> source through the global tracking store
            version = client.create_model_version(
                name,
                source=source,
                run_id=run_id,
                tags=tags,
                model_id=source.removeprefix("models:/"),
                description=f"{model} ({info['config'].arch}), {steps} steps on {info['config'].dataset}; "
                f"config {config_hash}, MLflow run {run_id}",
            )
        new = True
        log.info("%s: registered version %s (run %s)", name, version.version, run_id)
    else:
        for key, value in tags.items():
            client.set_model_version_tag(name, version.version, key, value)
        new = False
        log.info("%s: run %s is version %s already (no new version)", name, run_id, version.version)
    client.set_registered_model_alias(name, CANDIDATE_ALIAS, version.version)
    return Registration(
        model=model,
        registered_model=name,
        version=int(version.version),
        model_uri=f"models:/{name}/{version.version}",
        logged_model=version.source,
        run_id=run_id,
        config_hash=config_hash,
        new=new,
    )


def version_tags(params: Params, model: str, summary: dict[str, Any]) -> dict[str, str]:
    """What a version says about itself: model, arch, config hash, dataset, and the data and code fingerprints
    the train stage computed for the run's config hash (``models/<model>/train.json``)."""
    cfg = params.model(model)
    return {
        MODEL_TAG: model,
        ARCH_TAG: cfg.arch,
        CONFIG_HASH_TAG: str(summary["config_hash"]),
        DATASET_TAG: params.training_set(model),
        DATA_FINGERPRINT_TAG: str(summary["data_fingerprint"]),
        CODE_FINGERPRINT_TAG: str(summary["code_fingerprint"]),
    }


def register_project(params: Params, names: Iterable[str] | None = None) -> list[Registration]:
    """The register stage: every model of ``params`` (or ``names``) that the train stage exported
    (``models/<model>/train.json`` names its run) -> a registered version; writes ``registry/<model>.json``."""
    layout = params.layout
    uri = tracking_uri(params)
    done = []
    for model in names or list(params.models):
        summary_file = layout.train_summary(model)
        if not summary_file.is_file():
            raise FileNotFoundError(f"{summary_file}: model {model!r} is not trained; run the train stage first")
        summary = json.loads(summary_file.read_text(encoding="utf-8"))
        registration = register_generator(
            uri,
            model,
            summary["run_id"],
            summary["config_hash"],
            layout.generator(model),
            version_tags(params, model, summary),
        )
        record = layout.registration(model)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(registration.to_json(), indent=1), encoding="utf-8")
        done.append(registration)
    return done
