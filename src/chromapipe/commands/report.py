"""``chromapipe report``: rebuild reports/ from the evaluation records and MLflow, without retraining or
re-evaluating (the report stage's :func:`chromapipe.reporting.report.build_report`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="rebuild reports/ from evaluation results and MLflow (no retraining)")
    parser.add_argument("--params", help="params.yaml to read (default: <root>/params.yaml)")
    parser.add_argument(
        "--root",
        help="project root holding the evaluation results (default: the cwd); its mlflow.db unless tracking.uri is set",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from chromapipe.config import load_params, project_root, tracking_uri
    from chromapipe.reporting.report import build_report

    root = Path(args.root).resolve() if args.root else project_root()
    params = load_params(args.params or root / "params.yaml")
    print(build_report(params, root, tracking_uri(params, root) if args.root else None))
    return 0
