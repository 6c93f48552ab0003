"""``chromapipe colorize``: colorize user photos at their full resolution with a trained generator.

The network sees L* resized (with antialiasing) to the model's square training resolution and predicts
a*b* there; the output keeps the original L* at full resolution and only borrows the upsampled a*b*.
Exit code: 0 when every file was written, 1 when some failed (each is reported and skipped), 2 for
usage errors (no or missing model, bad options). The loop over files is :mod:`chromapipe.inference.runner`'s,
the per-image work :class:`chromapipe.inference.colorizer.Colorizer`'s (the Python API's).
"""

from __future__ import annotations

import argparse

from chromapipe.config import MAX_PIXELS


def run(args: argparse.Namespace) -> int:
    from chromapipe.inference.runner import run as colorize_files

    return colorize_files(args)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "colorize",
        help="colorize photos at full resolution with a trained generator",
        description=__doc__.split("\n\n")[0].replace("``", ""),
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or directories (searched recursively)")
    p.add_argument(
        "-o", "--output", required=True, metavar="OUTDIR", help="output directory (directory inputs keep their tree)"
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", metavar="NAME", help="a model trained by `dvc repro`: models/NAME/generator.pt")
    src.add_argument("--checkpoint", metavar="PATH", help="a generator file (chromapipe-generator/1)")
    src.add_argument("--run", metavar="MLFLOW_RUN_ID", help="the generator logged to MLflow by a training run")
    src.add_argument(
        "--model-uri",
        metavar="URI",
        help="an MLflow model: models:/chromapipe-<model>@<alias> or /<version> (the Model Registry), runs:/<id>/...",
    )
    p.add_argument(
        "--tracking-uri", help="MLflow tracking URI for --run / --model-uri (default: params.yaml's tracking.uri)"
    )
    p.add_argument("--params", metavar="PATH", help="params.yaml (default: the project root's; defaults if absent)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--batch-size", type=int, default=4, help="images per generator call (default 4)")
    p.add_argument("--jpeg-quality", type=int, default=95, metavar="Q", help="JPEG/WebP quality 1..100 (default 95)")
    p.add_argument("--reference", metavar="IMAGE", help="PalGAN family: take the palette from this photo")
    p.add_argument(
        "--samples", type=int, metavar="N", help="PalGAN family: N diverse colorizations per input (<stem>_sample<k>)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed for --samples (default 0)")
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS, help="refuse larger images (decompression-bomb guard)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
