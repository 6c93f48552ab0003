"""The ``chromapipe`` command. Each subcommand lives beside the code it drives and registers itself here."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# module -> provides ``register(subparsers)``; a subcommand's parser sets ``func(args) -> int``
COMMAND_MODULES = (
    "chromapipe.models.cli",
    "chromapipe.weights.cli",
    "chromapipe.evaluation.score",
    "chromapipe.inference.colorize",
    "chromapipe.reporting.report",
    "chromapipe.training.local_cluster",
    "chromapipe.serving.promote",
    "chromapipe.serving.export",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chromapipe", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # a subcommand not built yet
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
