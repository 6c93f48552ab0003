"""Shared start-up for the stage scripts: logging, validated params, a clean exit on configuration errors."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from chromapipe.config import ConfigError, Params, load_params


def run_stage(body: Callable[[Params], object], check: Callable[[Params], object] | None = None) -> None:
    """Run ``body`` on the validated params. ``check``: more validation before any work (the train and
    evaluate stages check every model's options against its recipe; prepare and report import no model
    code, so a change there does not rerun them)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        params = load_params()
        if check is not None:
            check(params)
        body(params)
    except ConfigError as exc:
        print(f"params.yaml: {exc}", file=sys.stderr)
        sys.exit(2)
