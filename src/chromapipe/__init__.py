"""chromapipe: train, compare and use GAN image colorizers (PalGAN, ChromaGAN, pix2pix) as one DVC pipeline.

``from chromapipe import Colorizer`` is the Python API (:class:`chromapipe.inference.colorizer.Colorizer`).
It is imported on first use (PEP 562): ``import chromapipe`` stays light — no torch, Ray or MLflow — for
the stages and commands that never colorize. :mod:`chromapipe.codedeps` reads :data:`LAZY_EXPORTS` so a
script's ``from chromapipe import Colorizer`` still counts the module in the script's code closure.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> the module defining it, imported when the name is first used
LAZY_EXPORTS = {"Colorizer": "chromapipe.inference.colorizer"}

__all__ = ["Colorizer", "__version__"]


def __getattr__(name: str) -> Any:
    if name in LAZY_EXPORTS:
        value = getattr(importlib.import_module(LAZY_EXPORTS[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
