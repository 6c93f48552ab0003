"""The ``chromapipe`` command: one module per subcommand in :mod:`chromapipe.commands`.

The convention: ``commands/<name>.py`` has ``register(subparsers)``, which adds the subcommand's parser with
``func=run``, and ``run(args) -> int``, the exit code. The work lives in the layers below, imported inside
``run``, so ``chromapipe --help`` imports neither torch, Ray nor MLflow.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMANDS = ("models", "weights", "score", "colorize", "report", "ray_local", "promote", "export")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chromapipe", description="Train, compare and use GAN image colorizers.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"chromapipe.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
