"""``chromapipe export SOURCE --format onnx|safetensors -o OUT``: a trained generator for people without this
repository's MLflow store or params.

SOURCE is anything ``Colorizer.load`` takes (a model name, a generator file, ``runs:/…``, ``models:/…@alias``).
OUT is a directory:

- ``safetensors``: ``model.safetensors`` + ``config.json`` (the network's config, where it came from, the
  preprocessing, the evaluation records) + ``README.md`` (the model card). ``Colorizer.load(OUT)`` reads it
  anywhere, with no params.yaml and no MLflow store.
- ``onnx``: ``model.onnx`` (``Recipe.predict`` at the model's resolution, dynamic batch:
  :mod:`chromapipe.serving.onnx_export`), checked with ``onnx.checker`` and against torch in onnxruntime
  before the command succeeds; ``config.json`` records the check; ``README.md`` the model card.

Exit code 0, 2 for usage errors (no such model, a missing optional dependency), 1 when the ONNX check fails.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from chromapipe.serving.export import FORMATS, MODEL_CARD


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a trained generator as ONNX or safetensors, with a model card",
        description=__doc__.split("\n\n")[0].replace("``", ""),
    )
    p.add_argument("source", help="a model name, a generator file, runs:/<run id> or models:/chromapipe-<model>@alias")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="the directory to write")
    p.add_argument("--opset", type=int, help="ONNX opset (default 18)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: params.yaml's tracking.uri)")
    p.add_argument("--params", metavar="PATH", help="params.yaml (default: the project root's; defaults if absent)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from chromapipe.inference.source import UsageError
    from chromapipe.serving.export import export

    try:
        result = export(
            args.source,
            args.format,
            Path(args.output),
            tracking=args.tracking_uri,
            params_path=args.params,
            opset=args.opset,
        )
    except UsageError as exc:
        print(f"chromapipe export: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        extra = "onnx" if args.format == "onnx" else "safetensors"
        print(
            f"chromapipe export: error: {exc.name} is not installed (pip install 'chromapipe[{extra}]')",
            file=sys.stderr,
        )
        return 2
    except AssertionError as exc:
        print(f"chromapipe export: the ONNX check failed: {exc}", file=sys.stderr)
        return 1
    for name, digest in result["files"].items():
        print(f"{Path(result['directory']) / name}  sha256 {digest}")
    for name, row in (result["parity"] or {}).get("outputs", {}).items():
        print(
            f"onnxruntime vs torch, {name}: max |diff| {row['max_abs_diff']:.3g}, mean {row['mean_abs_diff']:.3g} "
            f"(tolerance {row['tolerance']:.3g} {row['unit']})"
        )
    print(f"model card: {Path(result['directory']) / MODEL_CARD} ({result['evaluation_sets']} evaluation set(s))")
    return 0
