"""Shared start-up for the stage scripts: logging and a clean exit on configuration errors."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from chromapipe.config import ConfigError, Params, load_params


def run_stage(body: Callable[[Params], object]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        body(load_params())
    except ConfigError as exc:
        print(f"params.yaml: {exc}", file=sys.stderr)
        sys.exit(2)
