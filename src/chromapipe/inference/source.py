"""Where the generator comes from: a trained model by name, a generator file, or an MLflow run.

All three end in the same self-describing generator file (:mod:`chromapipe.models.checkpoint`), so
colorizing needs neither params.yaml nor the training code's state — params are read only to find the
models directory and the tracking URI, and their defaults apply when there is no params.yaml.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from chromapipe.config import ConfigError, Params, load_params, project_root, resolve_path, tracking_uri

log = logging.getLogger(__name__)

#: where the trainer logs the generator file in a model's MLflow run
ARTIFACT_PATH = "generator/generator.pt"
GENERATOR_FILE = "generator.pt"


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
    """``<train.out>/<name>/generator.pt`` — what ``dvc repro`` trained for model ``name``."""
    models_dir = resolve_path(params.train.out)
    path = models_dir / name / GENERATOR_FILE
    if path.exists():
        return path
    trained = sorted(p.parent.name for p in models_dir.glob(f"*/{GENERATOR_FILE}"))
    hint = f"trained models: {', '.join(trained)}" if trained else f"no trained models under {models_dir}"
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
    """Download the generator file the trainer logged in MLflow run ``run_id`` into ``dst``.

    The expected artifact is :data:`ARTIFACT_PATH`; if it is not there, any ``*generator*.pt`` artifact
    of the run is accepted (one level of tolerance for a changed artifact layout), else the error lists
    what the run holds.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        client = MlflowClient(tracking_uri=uri)
        client.get_run(run_id)
    except MlflowException as exc:
        raise UsageError(f"--run {run_id}: no such MLflow run in {uri} ({exc.message.splitlines()[0]})") from None
    except Exception as exc:  # noqa: BLE001 - an unreachable or broken store is a usage problem too
        raise UsageError(f"--run {run_id}: cannot read the MLflow store {uri} ({type(exc).__name__}: {exc})") from None

    def walk(path: str | None = None) -> list[str]:
        files = []
        for info in client.list_artifacts(run_id, path):
            files.extend(walk(info.path) if info.is_dir else [info.path])
        return files

    artifacts = walk()
    if ARTIFACT_PATH in artifacts:
        chosen = ARTIFACT_PATH
    else:
        candidates = [a for a in artifacts if a.endswith(".pt") and "generator" in Path(a).name]
        if not candidates:
            listing = ", ".join(artifacts[:20]) or "no artifacts"
            raise UsageError(f"--run {run_id}: no generator artifact ({ARTIFACT_PATH}) in the run; it has: {listing}")
        chosen = sorted(candidates)[0]
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=chosen, dst_path=str(dst), tracking_uri=uri
    )
    log.info("downloaded %s from MLflow run %s (%s)", chosen, run_id, uri)
    return Path(local)


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
