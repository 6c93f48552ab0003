"""The contracts between stages, in one place: where each stage writes, and the names by which a later stage,
the CLI or a benchmark finds what an earlier one produced — in the project directory and in MLflow.

Why one module: a path or a metric name that two stages spell separately is a contract kept by matching
strings; renaming it in one place breaks the other silently (the report would just show an empty curve).
Here each name is defined once and everything else imports it. Torch-free and MLflow-free at import (the
report stage and ``import chromapipe`` stay light); :func:`download_generator` imports MLflow when called.

Files. Every output path is fixed relative to the project root (the directory of ``params.yaml``) and is
not a setting: ``dvc.yaml`` names the same paths as the stages' ``outs`` (``tests/test_pipeline_dvc.py``
checks that they agree), so a stage can never write where DVC does not look. A test or a benchmark that
wants its outputs elsewhere puts its params file there: the root moves with it.

MLflow. One run per model and configuration; what the driver, the workers, the evaluate stage and the report
write and read there is named below: the run's tags, its logged parameter keys, its metric keys and its
artifact paths.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for annotations: importing this module must not import MLflow
    from mlflow.tracking import MlflowClient

# -- the project directory ---------------------------------------------------------------------------------------
PREPARED_DIR = "data/prepared"  # <dataset>/manifest.json + <split>/shard-*.npy (the prepare stage)
MODELS_DIR = "models"  # <model>/generator.pt + train.json (the train stage)
EVALUATION_DIR = "evaluation"  # <model>/<set>/metrics.json + samples, summary/<model>.json (the evaluate stage)
REPORTS_DIR = "reports"  # index.html, results.md, figures/, plots/ (the report stage)
REGISTRY_DIR = "registry"  # <model>.json: the registered MLflow model version of each generator (the register stage)
REPORT_OUTPUTS = ("index.html", "results.md", "figures", "plots")  # what the report stage writes in REPORTS_DIR
MANIFEST_FILE = "manifest.json"
GENERATOR_FILE = "generator.pt"
TRAIN_SUMMARY_FILE = "train.json"
METRICS_FILE = "metrics.json"
SUMMARY_FILE = "summary.json"  # beside a record's metrics.json: its numbers alone
SUMMARY_DIR = "summary"  # under EVALUATION_DIR: the numbers alone, per model, for `dvc metrics show`


@dataclass(frozen=True)
class Layout:
    """Every stage output of the project rooted at ``root``."""

    root: Path

    def prepared(self, dataset: str) -> Path:
        """The prepared shards and manifest of dataset ``dataset`` (``datasets.<name>``)."""
        return self.root / PREPARED_DIR / dataset

    @property
    def models(self) -> Path:
        return self.root / MODELS_DIR

    def model_dir(self, model: str) -> Path:
        return self.models / model

    def generator(self, model: str) -> Path:
        """The trained generator of model ``model`` (:mod:`chromapipe.models.checkpoint`'s format)."""
        return self.model_dir(model) / GENERATOR_FILE

    def train_summary(self, model: str) -> Path:
        return self.model_dir(model) / TRAIN_SUMMARY_FILE

    def trained_models(self) -> list[str]:
        """Names of the models that have a generator file, sorted."""
        return sorted(p.parent.name for p in self.models.glob(f"*/{GENERATOR_FILE}"))

    @property
    def evaluation(self) -> Path:
        return self.root / EVALUATION_DIR

    def evaluation_record(self, model: str, dataset: str) -> Path:
        """The directory of one (model, evaluation set) record: ``metrics.json``, ``samples/``, palettes."""
        return self.evaluation / model / dataset

    def summary(self, model: str) -> Path:
        return self.evaluation / SUMMARY_DIR / f"{model}.json"

    @property
    def reports(self) -> Path:
        return self.root / REPORTS_DIR

    @property
    def registry(self) -> Path:
        return self.root / REGISTRY_DIR

    def registration(self, model: str) -> Path:
        """Which version of ``chromapipe-<model>`` holds this project's generator (the register stage's record)."""
        return self.registry / f"{model}.json"


# -- MLflow: tags, parameter keys, metric keys, artifact paths ---------------------------------------------------
MODEL_TAG = "chromapipe.model"
CONFIG_HASH_TAG = "chromapipe.config_hash"
ARCH_TAG = "chromapipe.arch"
TAG_PREFIX = "chromapipe."  # the recipe's provenance (weights, teachers) is logged under this prefix

#: a run's logged parameters are sections flattened with dots: ``model.<key>`` (the model's params),
#: ``train.<key>``, ``data.<key>`` (the manifest's data params), ``seed`` and ``data_counts.<split>``
MODEL_PARAMS, TRAIN_PARAMS, DATA_PARAMS, DATA_COUNTS_PARAMS, SEED_PARAM = (
    "model",
    "train",
    "data",
    "data_counts",
    "seed",
)


def param_key(section: str, key: str) -> str:
    """The logged parameter ``<section>.<key>`` (e.g. ``model.batch_size``)."""
    return f"{section}.{key}"


TRAIN_METRIC = "train/"  # train/<loss term>, train/lr_g, train/images_per_s
VAL_METRIC = "val/"  # validation during training: val/psnr, val/ssim, ...
VAL_GRAY_METRIC = "val_gray/"  # the gray baseline on the same images, at step 0
COMPILE_METRIC = "compile/"  # torch.compile's counts: compile/graphs, compile/graph_breaks, ...
EVAL_METRIC = "eval/"  # eval/<set>/<metric>, logged by the evaluate stage
LOSS_METRICS = (TRAIN_METRIC + "g_total", TRAIN_METRIC + "d_total")
PREVIEW_IMAGE_KEY = "preview"  # the preview grid logged every train.image_every steps
PREVIEW_IMAGES_DIR = "images"  # where MLflow's log_image(key=..., step=...) stores stepped images

GENERATOR_ARTIFACT_DIR = "generator"
GENERATOR_ARTIFACT = f"{GENERATOR_ARTIFACT_DIR}/{GENERATOR_FILE}"
PREPROCESSING_ARTIFACT = f"{GENERATOR_ARTIFACT_DIR}/preprocessing.json"
TRAIN_SUMMARY_ARTIFACT = TRAIN_SUMMARY_FILE
EVALUATION_ARTIFACT_DIR = "evaluation"


#: the generator as an MLflow model (a pyfunc wrapping :class:`chromapipe.inference.colorizer.Colorizer`), logged
#: into the model's training run under this name; its artifact key for the generator file
LOGGED_MODEL_NAME = "colorizer"
LOGGED_MODEL_GENERATOR = "generator"
LOGGED_MODEL_TAG = "chromapipe.logged_model"  # run tag: the logged model's id (so a rerun does not log it again)

# -- the Model Registry: one registered model per project model, one version per training run ---------------------
REGISTERED_MODEL_PREFIX = "chromapipe-"
DATASET_TAG = "chromapipe.dataset"  # the training dataset's name (``models.<m>.dataset``)
DATA_FINGERPRINT_TAG = "chromapipe.data_fingerprint"  # the training data's params and shard checksums, hashed
CODE_FINGERPRINT_TAG = "chromapipe.code_fingerprint"  # the train stage's code (its import closure), hashed
RUN_ID_TAG = "chromapipe.run_id"
#: set by the pipeline to the version it registered last; moved only by a person (``chromapipe promote``)
CANDIDATE_ALIAS, CHAMPION_ALIAS = "candidate", "champion"


def registered_model_name(model: str) -> str:
    """``chromapipe-<model>``: the registered model that holds every trained version of project model ``model``."""
    return model if model.startswith(REGISTERED_MODEL_PREFIX) else REGISTERED_MODEL_PREFIX + model


def eval_metric(dataset: str, metric: str) -> str:
    """The MLflow key of one evaluation number: ``eval/<set>/<metric>``."""
    return f"{EVAL_METRIC}{dataset}/{metric}"


def eval_protocol_tag(dataset: str) -> str:
    """The model-version tag holding the protocol of that set's numbers (split, images, resolution, ...)."""
    return f"{EVAL_METRIC}{dataset}/protocol"


def evaluation_artifact(dataset: str, name: str = "") -> str:
    """Where the evaluate stage logs a set's record and samples in the model's run."""
    return "/".join(p for p in (EVALUATION_ARTIFACT_DIR, dataset, name) if p)


def generator_logged(client: MlflowClient, run_id: str) -> bool:
    """Whether the run holds its finished generator (logged last, so its presence means complete)."""
    return any(a.path == GENERATOR_ARTIFACT for a in client.list_artifacts(run_id, GENERATOR_ARTIFACT_DIR))


TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"


def download_generator(tracking_uri: str, run_id: str, destination: Path) -> Path:
    """Copy the generator that run ``run_id`` logged to the file ``destination``; returns ``destination``.

    The one way any part of the project fetches a generator from MLflow (the train stage for a finished run,
    ``chromapipe colorize --run``, the benchmarks). Raises MLflow's own exception when the run or the artifact
    does not exist; callers turn that into their own message.
    """
    import mlflow

    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = destination.parent / f".{destination.name}.download"
    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=GENERATOR_ARTIFACT, dst_path=str(staging), tracking_uri=tracking_uri
        )
        shutil.move(local, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination


@contextlib.contextmanager
def mlflow_store(tracking_uri: str) -> Iterator[None]:
    """Point MLflow's process-wide tracking URI (and so its default registry URI) at ``tracking_uri`` for the
    block, then restore it. Why: MLflow's fluent API (``log_model`` into a run) and its URI resolvers (the
    ``models:/`` download, registering a logged model as a version) read that global, whatever store the
    caller's client or argument named — without this they would silently use another store. The one place
    that relies on MLflow's private ``_use_tracking_uri`` (pinned MLflow; ``tests/test_serving.py`` runs it).
    Restoring an unset global also unsets ``MLFLOW_TRACKING_URI`` in MLflow, so the caller's variable is put
    back here."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    saved = os.environ.get(TRACKING_URI_ENV)
    try:
        with _use_tracking_uri(tracking_uri):
            yield
    finally:
        if saved is not None:
            os.environ[TRACKING_URI_ENV] = saved
