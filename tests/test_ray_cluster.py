"""Training against an existing Ray cluster: a head and a second worker node started on localhost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chromapipe.config import load_params
from chromapipe.data.prepare import prepare
from tests.conftest import REPO, quick_params, two_node_cluster


@pytest.mark.slow
def test_train_stage_uses_the_cluster_named_by_ray_address(tmp_path: Path) -> None:
    params = load_params(quick_params(tmp_path, train={"resources_per_worker": {"CPU": 1.0}}))
    prepare(params.dataset("sample"), params.dataset_dir("sample"))
    with two_node_cluster() as (address, env):
        # The stage runs as DVC runs it: a fresh process (Ray reads its auth settings at import time).
        subprocess.run(
            [sys.executable, str(REPO / "pipeline" / "train.py"), "tiny"],
            cwd=tmp_path,
            env={**env, "RAY_ADDRESS": address},
            check=True,
            timeout=600,
        )
    summary = json.loads((tmp_path / "models" / "tiny" / "train.json").read_text())
    assert summary["ray"]["gcs_address"].endswith(
        ":" + address.rsplit(":", 1)[1]
    )  # the port we started; Ray names the host by its IP
    assert summary["ray"]["nodes"] == 2  # the head and the worker node we started
    assert summary["steps"] == 8


def test_ray_local_serves_every_train_stage(tmp_path: Path) -> None:
    """`chromapipe ray-local -- CMD` (what `make repro` runs): the train stage joins the one instance it
    started instead of starting its own."""
    params = load_params(quick_params(tmp_path, train={"num_workers": 1, "resources_per_worker": {"CPU": 1.0}}))
    prepare(params.dataset("sample"), params.dataset_dir("sample"))
    cli = str(Path(sys.executable).with_name("chromapipe"))
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    subprocess.run(
        [cli, "ray-local", "--num-cpus", "2", "--", sys.executable, str(REPO / "pipeline" / "train.py"), "tiny"],
        cwd=tmp_path,
        env=env,
        check=True,
        timeout=600,
    )
    summary = json.loads((tmp_path / "models" / "tiny" / "train.json").read_text())
    assert summary["ray"]["joined_existing"] and summary["ray"]["nodes"] == 1 and summary["steps"] == 8
