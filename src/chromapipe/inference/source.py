"""Where a generator comes from: a trained model by name, a generator file, an exported directory, or MLflow
(a run's generator, a logged MLflow model, a registered version by number or alias).

All of them end in a local path that :func:`load_any` turns into (recipe, generator, info): a generator file
(:mod:`chromapipe.models.checkpoint`), a portable safetensors directory (:mod:`chromapipe.models.portable`),
an MLflow model directory (whose artifacts hold a generator file), or a directory holding ``generator.pt``.
So colorizing needs neither params.yaml nor the training code's state — params are read only to find the
models directory and the tracking URI, and their defaults apply when there is no params.yaml.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from chromapipe.config import ConfigError, Params, load_params, project_root, tracking_uri
from chromapipe.layout import (
    GENERATOR_ARTIFACT,
    GENERATOR_FILE,
    LOGGED_MODEL_GENERATOR,
    download_generator,
    generator_logged,
    mlflow_store,
)

log = logging.getLogger(__name__)

MLFLOW_SCHEMES = ("runs:/", "models:/")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*$")  # what a name in params.yaml's models looks like
_MLMODEL = "MLmodel"


class UsageError(ValueError):
    """Bad choices (no model, unknown run, missing checkpoint, an option the model does not take): the CLI's
    exit code 2, the Python API's ValueError."""


def project_params(path: str | os.PathLike[str] | None) -> Params:
    """params.yaml if there is one (an explicit ``--params`` must exist), else the defaults."""
    if path is None and not (project_root() / "params.yaml").exists():
        return Params()
    try:
        return load_params(path)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def default_tracking_uri(params_path: str | os.PathLike[str] | None = None) -> str:
    """The project's MLflow store: params.yaml's ``tracking.uri``, else ``mlflow.db`` in the workspace."""
    return tracking_uri(project_params(params_path))


def model_checkpoint(name: str, params: Params) -> Path:
    """``models/<name>/generator.pt`` — what ``dvc repro`` trained for model ``name``."""
    layout = params.layout
    path = layout.generator(name)
    if path.exists():
        return path
    trained = layout.trained_models()
    hint = f"trained models: {', '.join(trained)}" if trained else f"no trained models under {layout.models}"
    if params.models and name not in params.models:
        hint += f"; params.yaml defines {', '.join(sorted(params.models))}"
    raise UsageError(
        f"model {name!r}: {path} not found ({hint}); train it with `dvc repro train` "
        f"(or `python pipeline/train.py {name}`)"
    )


def checkpoint_file(path: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--checkpoint {path}: no such file")
    return p


def download_run_generator(run_id: str, uri: str, dst: Path, label: str | None = None) -> Path:
    """Download the generator that MLflow run ``run_id`` logged (:data:`chromapipe.layout.GENERATOR_ARTIFACT`)
    into the directory ``dst``; a missing run or artifact is a :class:`UsageError` saying what the run holds.
    ``label``: how the caller named the run in its errors (``--run <id>``, ``runs:/<id>``)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    label = label or f"--run {run_id}"
    try:
        client = MlflowClient(tracking_uri=uri)
        client.get_run(run_id)
    except MlflowException as exc:
        raise UsageError(f"{label}: no such MLflow run in {uri} ({exc.message.splitlines()[0]})") from None
    except Exception as exc:  # noqa: BLE001 - an unreachable or broken store is a usage problem too
        raise UsageError(f"{label}: cannot read the MLflow store {uri} ({type(exc).__name__}: {exc})") from None
    if not generator_logged(client, run_id):
        listing = ", ".join(a.path for a in client.list_artifacts(run_id)) or "no artifacts"
        raise UsageError(f"{label}: no generator artifact ({GENERATOR_ARTIFACT}) in the run; it has: {listing}")
    path = download_generator(uri, run_id, dst / GENERATOR_FILE)
    log.info("downloaded %s from MLflow run %s (%s)", GENERATOR_ARTIFACT, run_id, uri)
    return path


def download_model(model_uri: str, uri: str, dst: Path) -> Path:
    """The local copy (under ``dst``) of an MLflow URI: ``runs:/<id>`` alone is the run's generator file;
    ``models:/<name>@<alias>``, ``models:/<name>/<version>``, ``models:/<model id>`` and ``runs:/<id>/<path>``
    are downloaded as MLflow resolves them (a registered version: its logged MLflow model)."""
    run_only = re.fullmatch(r"runs:/([0-9a-zA-Z]+)/?", model_uri)
    if run_only:
        return download_run_generator(run_only.group(1), uri, dst, label=model_uri)
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        with mlflow_store(uri):  # MLflow resolves models:/ with the global registry URI, not the arguments
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=model_uri, dst_path=str(dst), tracking_uri=uri, registry_uri=uri
            )
    except MlflowException as exc:
        raise UsageError(f"{model_uri}: {exc.message.splitlines()[0]} (MLflow store {uri})") from None
    except Exception as exc:  # noqa: BLE001 - an unreachable or broken store is a usage problem too
        raise UsageError(f"{model_uri}: cannot read it from {uri} ({type(exc).__name__}: {exc})") from None
    log.info("downloaded %s (%s)", model_uri, uri)
    return Path(local)


@contextlib.contextmanager
def local_source(
    source: str | os.PathLike[str],
    *,
    tracking: str | None = None,
    params_path: str | os.PathLike[str] | None = None,
) -> Iterator[Path]:
    """The local path of anything :meth:`Colorizer.load` takes, for the duration of the block (a download
    lives in a temporary directory): an MLflow URI, an existing file or directory, else a model name of the
    project's params."""
    text = os.fspath(source)
    if text.startswith(MLFLOW_SCHEMES):
        with tempfile.TemporaryDirectory(prefix="chromapipe-model-") as tmp:
            yield download_model(text, tracking or default_tracking_uri(params_path), Path(tmp))
        return
    path = Path(text).expanduser()
    if path.exists():
        yield path
        return
    if not _MODEL_NAME.match(text) or text.endswith((".pt", ".safetensors", ".onnx")):
        raise UsageError(f"{text}: no such file or directory (nor an MLflow runs:/ or models:/ URI)")
    yield model_checkpoint(text, project_params(params_path))


def mlflow_model_generator(directory: Path) -> Path:
    """The generator file inside an MLflow model directory this project logged (the pyfunc's artifact)."""
    spec = yaml.safe_load((directory / _MLMODEL).read_text(encoding="utf-8")) or {}
    artifacts = ((spec.get("flavors") or {}).get("python_function") or {}).get("artifacts") or {}
    entry = artifacts.get(LOGGED_MODEL_GENERATOR) or {}
    relative = entry.get("path") if isinstance(entry, dict) else None
    if not relative or not (directory / relative).is_file():
        raise UsageError(f"{directory}: an MLflow model without a chromapipe generator artifact")
    return directory / relative


def generator_location(path: Path) -> Path:
    """The file or portable directory inside whatever ``path`` is (see the module docstring)."""
    from chromapipe.models.portable import is_portable

    if path.is_file():
        return path
    if is_portable(path):
        return path
    if (path / _MLMODEL).is_file():
        return mlflow_model_generator(path)
    if (path / GENERATOR_FILE).is_file():
        return path / GENERATOR_FILE
    if any(path.glob("*.onnx")):
        raise UsageError(
            f"{path}: an ONNX export runs in onnxruntime (see its README.md); the Colorizer loads generator "
            "files, safetensors exports and MLflow models"
        )
    raise UsageError(
        f"{path}: neither a generator file, a safetensors export (config.json + model.safetensors), an MLflow "
        f"model nor a directory with {GENERATOR_FILE}"
    )


def load_any(path: Path, device: Any) -> tuple[Any, Any, dict[str, Any]]:
    """(recipe, generator in eval mode on ``device``, info) from any local source path."""
    from chromapipe.models.checkpoint import CheckpointError, load_generator
    from chromapipe.models.portable import load_portable

    location = generator_location(path)
    try:
        if location.is_dir():
            return load_portable(location, device)
        return load_generator(location, device)
    except (CheckpointError, ConfigError) as exc:  # ConfigError: the file names an unknown arch
        raise UsageError(str(exc)) from None


class GeneratorSource:
    """The CLI's choice of generator (exactly one option of ``--model``, ``--checkpoint``, ``--run``,
    ``--model-uri``), as a context manager yielding its local path; errors name the option."""

    def __init__(
        self,
        *,
        model: str | None,
        checkpoint: str | None,
        run: str | None,
        params_path: str | None,
        tracking: str | None,
        model_uri: str | None = None,
    ) -> None:
        self.model, self.checkpoint, self.run, self.model_uri = model, checkpoint, run, model_uri
        self.params_path, self.tracking = params_path, tracking
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Path:
        if self.checkpoint:
            return checkpoint_file(self.checkpoint)
        if self.model:
            return model_checkpoint(self.model, project_params(self.params_path))
        if self.run or self.model_uri:
            uri = self.tracking or default_tracking_uri(self.params_path)
            tmp = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="chromapipe-run-")))
            if self.run:
                return download_run_generator(self.run, uri, tmp)
            if not self.model_uri.startswith(MLFLOW_SCHEMES):
                raise UsageError(
                    f"--model-uri {self.model_uri}: expected runs:/<run id>[/path] or models:/<name>@<alias>"
                )
            return download_model(self.model_uri, uri, tmp)
        raise UsageError(
            "choose the colorizer: --model NAME, --checkpoint PATH or --run MLFLOW_RUN_ID (or --model-uri URI)"
        )

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
