"""``chromapipe promote``: point an alias of ``chromapipe-<model>`` (``@champion`` by default) at a version.

Why a command: the pipeline moves ``@candidate`` to every version it registers, but which generator is trusted
(``@champion``, what ``colorize --model-uri models:/chromapipe-<m>@champion`` and the served model use) is a
person's decision, made after looking at the version's evaluation tags. Without ``--version`` the alias goes
to the version ``@candidate`` holds. Exit code 0, or 2 when the model, version or alias does not exist.
"""

from __future__ import annotations

import argparse
import sys

from chromapipe.layout import CHAMPION_ALIAS as CHAMPION


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "promote",
        help="point an alias (default @champion) of chromapipe-<model> at a registered version",
        description=__doc__.split("\n\n")[0].replace("``", ""),
    )
    p.add_argument("model", help="the project's model name (or chromapipe-<model>)")
    p.add_argument("--version", type=int, help="the version to promote (default: the one @candidate holds)")
    p.add_argument("--alias", default=CHAMPION, help=f"the alias to set (default: {CHAMPION})")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: params.yaml's tracking.uri)")
    p.add_argument("--params", metavar="PATH", help="params.yaml (default: the project root's; defaults if absent)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from chromapipe.inference.source import UsageError, default_tracking_uri
    from chromapipe.layout import registered_model_name
    from chromapipe.serving.promote import promote

    try:
        uri = args.tracking_uri or default_tracking_uri(args.params)
        version, previous = promote(uri, args.model, args.version, args.alias)
    except UsageError as exc:
        print(f"chromapipe promote: error: {exc}", file=sys.stderr)
        return 2
    was = f"was version {previous}" if previous is not None else "new alias"
    print(f"{registered_model_name(args.model)}@{args.alias} -> version {version} ({was})")
    return 0
