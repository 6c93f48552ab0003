"""``chromapipe score PRED TARGET``: the metric suite on user images, with the protocol printed beside it.

Why a standalone command: users compare their own colorizations (or another system's) with ground truth
under exactly the protocol chromapipe reports — same implementations, weights hashes, sRGB uint8 at the
images' own resolution — without running the pipeline. The pairing and scoring are
:mod:`chromapipe.evaluation.image_pairs`'.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any


def run(args: argparse.Namespace) -> int:
    import torch

    from chromapipe.evaluation.image_pairs import ScoreInputError, score_pairs

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda requested but no CUDA device is available", file=sys.stderr)
        return 2
    try:
        result = score_pairs(
            args.pred,
            args.target,
            device=args.device,
            lpips_net=args.lpips_net,
            fid=not args.no_fid,
            batch_size=args.batch_size,
        )
    except ScoreInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1) if args.json else render_table(result))
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "score", help="PSNR/SSIM/LPIPS/FID-or-FD/colorfulness of PRED vs TARGET", description=__doc__
    )
    parser.add_argument("pred", type=Path, help="predicted image file or directory")
    parser.add_argument("target", type=Path, help="ground-truth image file or directory (matched by stem)")
    parser.add_argument("--json", action="store_true", help="JSON output with the full protocol")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--lpips-net", choices=("alex", "vgg"), default="alex")
    parser.add_argument("--no-fid", action="store_true", help="skip FID and the FD proxy")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.set_defaults(func=run)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.4f}"


def render_table(result: dict[str, Any]) -> str:
    pr = result["protocol"]
    lines = [
        f"chromapipe score: {pr['n_images']} image pair(s), {', '.join(pr['resolutions'])}, "
        f"{pr['color_space']}, {pr['resize']}, {pr['averaging']}, device {pr['device']}",
        f"{'metric':<16} {'value':>10}  note",
    ]
    for key, value in result["metrics"].items():
        d = result["details"].get(key, {})
        note = result["unavailable"].get(key, "")
        if not note and d.get("low_sample_warning"):
            note = f"only {d['n_samples']} samples (< {d['low_sample_threshold']}): unstable"
        lines.append(f"{key:<16} {_fmt(value):>10}  {note}")
    lines.append("implementations:")
    lines += [f"  {k}: {v}" for k, v in pr["implementations"].items()]
    lines.append("weights:")
    lines += [f"  {k}: {w['path']} sha256 {w['sha256']}" for k, w in pr["weights"].items()]
    lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in pr["versions"].items()))
    return "\n".join(lines)
