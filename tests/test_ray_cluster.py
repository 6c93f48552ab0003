"""Training against an existing Ray cluster: a head and a second worker node started on localhost."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from chromapipe.config import load_params
from chromapipe.data.prepare import prepare
from tests.conftest import REPO, quick_params

RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_train_stage_uses_the_cluster_named_by_ray_address(tmp_path: Path) -> None:
    if not shutil.which(RAY):
        pytest.skip("the ray CLI is not installed")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    # Ray 2.60 clusters started by `ray start` require token authentication: every process gets the token.
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **auth}
    start = [RAY, "start", "--disable-usage-stats", "--num-cpus=1", "--node-ip-address=127.0.0.1"]
    try:
        subprocess.run([*start, "--head", f"--port={port}", "--include-dashboard=false"], check=True, env=env, capture_output=True, timeout=180)
        subprocess.run([*start, f"--address={address}"], check=True, env=env, capture_output=True, timeout=180)
        params = load_params(quick_params(tmp_path, train={"resources_per_worker": {"CPU": 1.0}}))
        prepare(params.dataset("sample"))
        # The stage runs as DVC runs it: a fresh process (Ray reads its auth settings at import time).
        subprocess.run([sys.executable, str(REPO / "pipeline" / "train.py"), "tiny"], cwd=tmp_path, env={**env, "RAY_ADDRESS": address}, check=True, timeout=600)
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)
    summary = json.loads((tmp_path / "models" / "tiny" / "train.json").read_text())
    assert summary["ray"]["gcs_address"].endswith(f":{port}")
    assert summary["ray"]["nodes"] == 2  # the head and the worker node we started
    assert summary["steps"] == 8


def test_ray_local_serves_every_train_stage(tmp_path: Path) -> None:
    """`chromapipe ray-local -- CMD` (what `make repro` runs): the train stage joins the one instance it
    started instead of starting its own."""
    params = load_params(quick_params(tmp_path, train={"num_workers": 1, "resources_per_worker": {"CPU": 1.0}}))
    prepare(params.dataset("sample"))
    cli = str(Path(sys.executable).with_name("chromapipe"))
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    subprocess.run([cli, "ray-local", "--num-cpus", "2", "--", sys.executable, str(REPO / "pipeline" / "train.py"), "tiny"],
                   cwd=tmp_path, env=env, check=True, timeout=600)
    summary = json.loads((tmp_path / "models" / "tiny" / "train.json").read_text())
    assert summary["ray"]["joined_existing"] and summary["ray"]["nodes"] == 1 and summary["steps"] == 8
