"""Finding a training run's registered version: the one look-up the register stage, the evaluate stage and
``chromapipe promote`` share (MLflow-only, no torch: the evaluate stage's code closure stays small)."""

from __future__ import annotations

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient


def client_for(uri: str) -> MlflowClient:
    """Tracking and registry in the same store (the project's SQLite file or its tracking server)."""
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def find_version(client: MlflowClient, name: str, run_id: str) -> ModelVersion | None:
    """The version of registered model ``name`` that run ``run_id`` produced, if any."""
    try:
        versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    except MlflowException:
        return None
    return min(versions, key=lambda v: int(v.version)) if versions else None
