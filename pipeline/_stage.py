"""Shared start-up for the stage scripts: logging, validated params, a clean exit on configuration errors."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from chromapipe.config import ConfigError, Params, load_params


def run_stage(body: Callable[[Params], object], *, check_models: bool = True) -> None:
    """Run ``body`` on the validated params. ``check_models``: also validate every model's options
    against its recipe (imports torch and the models; the report stage needs neither)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        params = load_params()
        if check_models:
            from chromapipe.models.registry import validate_models

            validate_models(params)
        body(params)
    except ConfigError as exc:
        print(f"params.yaml: {exc}", file=sys.stderr)
        sys.exit(2)
