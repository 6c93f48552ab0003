"""The ``chromapipe`` subcommands, one module each: ``register(subparsers)`` and ``run(args) -> int``
(:mod:`chromapipe.cli`). The top layer: a command may import any package; the work stays in the layers."""
