"""The host's CPU model, for every benchmark's JSON. Free of torch, so that ``bench_colorize.py`` (whose parent
process stays torch-free to measure each model's peak RSS in its own subprocess) can use it too."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_name() -> str:
    """``model name`` from /proc/cpuinfo (Linux), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
