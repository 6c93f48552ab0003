"""One local Ray instance for the length of a command (``chromapipe ray-local -- CMD``, typically ``dvc repro``).

Each train stage is its own process; without a cluster each would start and stop a local Ray instance (seconds
each: reports/benchmarks.md, "Ray Train's fixed cost per run"). This command starts one instance, gives CMD its
address in ``RAY_ADDRESS`` (the train stages join it exactly as they join a real cluster), and stops it when CMD
ends. Ray 2.60's token authentication needs nothing extra here: the instance writes its token where local
drivers read it.
"""

from __future__ import annotations

import logging
import os
import subprocess

log = logging.getLogger(__name__)


def run_with_local_ray(command: list[str], num_cpus: int | None = None) -> int:
    """Start a local Ray instance, run ``command`` with ``RAY_ADDRESS`` set to it, stop the instance."""
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
