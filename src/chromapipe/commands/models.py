"""``chromapipe models``: every model in params.yaml with its architecture and parameter counts.

Counts are comparable with the papers' (docs/papers.md#thesis-architecture: pix2pix 54 M quoted, 97,096,015
with the class branch and PatchGAN 2,765,569 counted from the thesis code; #palgan-architecture: PalGAN E + G
22 M), so listing them is the quickest check that params.yaml builds the networks the reports compare against.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

COLUMNS = ("model", "arch", "resolution", "generator", "discriminator", "inference")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list the models in params.yaml with their parameter counts")
    parser.add_argument("--params", default=None, help="params file (default: the project root's params.yaml)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from chromapipe.config import ConfigError, load_params
    from chromapipe.models.registry import parameter_counts, validate_models

    try:
        params = validate_models(load_params(args.params))
        rows = [parameter_counts(name, cfg) for name, cfg in params.models.items()]
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}")
        return 2
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0


def format_table(rows: list[dict[str, Any]]) -> str:
    cells = [list(COLUMNS)] + [
        [f"{r[c]:,}" if isinstance(r[c], int) and c != "resolution" else str(r[c]) for c in COLUMNS] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = []
    for j, row in enumerate(cells):
        lines.append("  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
