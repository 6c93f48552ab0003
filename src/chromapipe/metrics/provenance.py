"""Package versions for metric provenance (never fails: a vendored copy without metadata says 'unknown')."""

from __future__ import annotations

import importlib.metadata


def pkg_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown (no package metadata)"
