"""Where the generator comes from: a trained model by name, a generator file, or an MLflow run.

All three end in the same self-describing generator file (:mod:`chromapipe.models.checkpoint`), so
colorizing needs neither params.yaml nor the training code's state — params are read only to find the
models directory and the tracking URI, and their defaults apply when there is no params.yaml.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from chromapipe.config import ConfigError, Params, load_params, project_root, tracking_uri
from chromapipe.layout import GENERATOR_ARTIFACT, GENERATOR_FILE, download_generator, generator_logged

log = logging.getLogger(__name__)


class UsageError(Exception):
    """Bad command-line choices (no model, unknown run, missing checkpoint): exit code 2."""


def project_params(path: str | None) -> Params:
    """params.yaml if there is one (an explicit ``--params`` must exist), else the defaults."""
    if path is None and not (project_root() / "params.yaml").exists():
        return Params()
    try:
        return load_params(path)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


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


def download_run_generator(run_id: str, uri: str, dst: Path) -> Path:
    """Download the generator that MLflow run ``run_id`` logged (:data:`chromapipe.layout.GENERATOR_ARTIFACT`)
    into the directory ``dst``; a missing run or artifact is a :class:`UsageError` saying what the run holds."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        client = MlflowClient(tracking_uri=uri)
        client.get_run(run_id)
    except MlflowException as exc:
        raise UsageError(f"--run {run_id}: no such MLflow run in {uri} ({exc.message.splitlines()[0]})") from None
    except Exception as exc:  # noqa: BLE001 - an unreachable or broken store is a usage problem too
        raise UsageError(f"--run {run_id}: cannot read the MLflow store {uri} ({type(exc).__name__}: {exc})") from None
    if not generator_logged(client, run_id):
        listing = ", ".join(a.path for a in client.list_artifacts(run_id)) or "no artifacts"
        raise UsageError(f"--run {run_id}: no generator artifact ({GENERATOR_ARTIFACT}) in the run; it has: {listing}")
    path = download_generator(uri, run_id, dst / GENERATOR_FILE)
    log.info("downloaded %s from MLflow run %s (%s)", GENERATOR_ARTIFACT, run_id, uri)
    return path


class GeneratorSource:
    """A context manager yielding the generator file's path (a run's download lives in a temp dir)."""

    def __init__(
        self,
        *,
        model: str | None,
        checkpoint: str | None,
        run: str | None,
        params_path: str | None,
        tracking: str | None,
    ) -> None:
        self.model, self.checkpoint, self.run = model, checkpoint, run
        self.params_path, self.tracking = params_path, tracking
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> Path:
        if self.checkpoint:
            return checkpoint_file(self.checkpoint)
        if self.model:
            return model_checkpoint(self.model, project_params(self.params_path))
        if self.run:
            uri = self.tracking or tracking_uri(project_params(self.params_path))
            self._tmp = tempfile.TemporaryDirectory(prefix="chromapipe-run-")
            return download_run_generator(self.run, uri, Path(self._tmp.name))
        raise UsageError("choose the colorizer: --model NAME, --checkpoint PATH or --run MLFLOW_RUN_ID")

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
