"""Point an alias (``chromapipe promote``) of ``chromapipe-<model>`` (``@champion`` by default) at a version.

Why a command: the pipeline moves ``@candidate`` to every version it registers, but which generator is trusted
(``@champion``, what ``colorize --model-uri models:/chromapipe-<m>@champion`` and the served model use) is a
person's decision, made after looking at the version's evaluation tags. Without ``--version`` the alias goes
to the version ``@candidate`` holds. Exit code 0, or 2 when the model, version or alias does not exist.
"""

from __future__ import annotations


def promote(uri: str, model: str, version: int | None, alias: str) -> tuple[int, int | None]:
    """Set ``alias`` of ``chromapipe-<model>`` to ``version`` (default: the ``@candidate`` version); returns
    (the version, the one the alias held before or None)."""
    from mlflow.exceptions import MlflowException

    from chromapipe.inference.source import UsageError
    from chromapipe.layout import CANDIDATE_ALIAS, registered_model_name
    from chromapipe.serving.versions import client_for

    client = client_for(uri)
    name = registered_model_name(model)
    try:
        client.get_registered_model(name)
    except MlflowException:
        names = sorted(m.name for m in client.search_registered_models())
        raise UsageError(
            f"{name}: no such registered model in {uri} (registered: {', '.join(names) or 'none'})"
        ) from None
    try:
        previous = int(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        previous = None
    if version is None:
        try:
            version = int(client.get_model_version_by_alias(name, CANDIDATE_ALIAS).version)
        except MlflowException:
            raise UsageError(f"{name} has no @{CANDIDATE_ALIAS}; give --version") from None
    try:
        client.get_model_version(name, str(version))
    except MlflowException:
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
        raise UsageError(f"{name}: no version {version} (versions: {versions})") from None
    client.set_registered_model_alias(name, alias, str(version))
    return version, previous
