"""Package versions for metric provenance (never fails: a vendored copy without metadata says 'unknown'), and
the reason recorded when a metric's package is missing."""

from __future__ import annotations

import importlib.metadata


def pkg_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown (no package metadata)"


def missing_package(missing: ModuleNotFoundError | str) -> str:
    """The ``unavailable`` reason for a metric whose package (an import error or a module name) is not
    installed, on a bare GPU image say: the suites record it and go on, as they do for missing weights,
    instead of failing every other metric."""
    name = missing if isinstance(missing, str) else missing.name or str(missing)
    return f"Python package {name} is not installed"
