"""Errors of the weights resolver (own module so that ``__init__`` and the resolver share one class)."""

from __future__ import annotations

from pathlib import Path


class WeightsUnavailable(RuntimeError):
    """A pretrained weights file is not present locally and may not or cannot be downloaded."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"pretrained weights {name!r} unavailable: {reason}")
        self.name = name
        self.reason = reason


class WeightsChecksumError(WeightsUnavailable):
    """A weights file exists but its SHA-256 is not the pinned one (corrupt, truncated or different release)."""

    def __init__(self, name: str, path: Path | str, got: str, expected: str) -> None:
        super().__init__(
            name,
            f"SHA-256 mismatch for file {path}: got {got}, expected {expected}; "
            "delete it and run `chromapipe weights fetch`",
        )
        self.path = Path(path)
