"""``chromapipe ray-local -- CMD``: run CMD (typically ``dvc repro``) against one local Ray instance.

Each train stage would otherwise start and stop a local Ray instance of its own; with one instance held for the
whole command, the stages join it as they join a real cluster (:mod:`chromapipe.training.local_cluster`).
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ray-local",
        help="run a command (e.g. dvc repro) against one local Ray instance",
        description=__doc__.split("\n\n")[0].replace("``", ""),
    )
    p.add_argument("--num-cpus", type=int, help="CPUs the instance offers (default: all)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command and its arguments, after --")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("chromapipe ray-local: give the command to run, e.g. `chromapipe ray-local -- dvc repro`")
        return 2
    from chromapipe.training.local_cluster import run_with_local_ray

    return run_with_local_ray(command, args.num_cpus)
