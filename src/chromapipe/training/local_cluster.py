"""``chromapipe ray-local -- CMD``: run CMD (typically ``dvc repro``) against one local Ray instance.

Each train stage is its own process; without a cluster each would start and stop a local Ray instance (seconds
each: reports/benchmarks.md, "Ray Train's fixed cost per run"). This command starts one instance, gives CMD its
address in ``RAY_ADDRESS`` (the train stages join it exactly as they join a real cluster), and stops it when CMD
ends. Ray 2.60's token authentication needs nothing extra here: the instance writes its token where local
drivers read it.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess

log = logging.getLogger(__name__)


def run(command: list[str], num_cpus: int | None = None) -> int:
    import ray

    # address="local": always a new instance of our own, even when another Ray cluster runs on this machine
    context = ray.init(
        address="local", num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, log_to_driver=False
    )
    address = context.address_info["gcs_address"]
    log.info("local Ray instance at %s for: %s", address, " ".join(command))
    try:
        return subprocess.run(command, env={**os.environ, "RAY_ADDRESS": address}).returncode
    finally:
        ray.shutdown()


def _cmd(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("chromapipe ray-local: give the command to run, e.g. `chromapipe ray-local -- dvc repro`")
        return 2
    return run(command, args.num_cpus)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ray-local",
        help="run a command (e.g. dvc repro) against one local Ray instance",
        description=__doc__.split("\n\n")[0].replace("``", ""),
    )
    p.add_argument("--num-cpus", type=int, help="CPUs the instance offers (default: all)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command and its arguments, after --")
    p.set_defaults(func=_cmd)
