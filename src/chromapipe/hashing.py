"""SHA-256 of files, streamed: shard checksums, pinned pretrained weights."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def source_fingerprint(*paths: Path) -> str:
    """SHA-256 over the Python sources under ``paths`` (files or directories), by relative name and content.

    Part of a training run's name: the train stage reruns when the model or training code changes (a DVC
    dependency), and must then train afresh instead of resuming the finished run trained by the old code.
    """
    h = hashlib.sha256()
    for root in paths:
        files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
        for f in files:
            h.update(f"{f.relative_to(root.parent)}\0".encode())
            h.update(f.read_bytes())
    return h.hexdigest()
