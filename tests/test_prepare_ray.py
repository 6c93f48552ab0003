"""The prepare stage on Ray: chunks run as Ray tasks, and the shards are byte-identical to a local run's."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from chromapipe.config import DataConfig, SplitConfig, load_params
from chromapipe.data.manifest import Manifest, read_manifest
from chromapipe.data.prepare import prepare
from chromapipe.layout import MANIFEST_FILE
from tests.conftest import REPO, quick_params, two_node_cluster


def _equal_but_run(a: Manifest, b: Manifest) -> bool:
    """Equal in everything but ``run`` (where and how fast)."""
    return dataclasses.replace(a, run=b.run) == b


def _same_files(a: Path, b: Path) -> list[Path]:
    """The relative paths of every file under ``a``, after checking ``b`` holds the same bytes for each."""
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name != MANIFEST_FILE)
    assert files and files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and p.name != MANIFEST_FILE)
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    return files


def test_ray_engine_writes_the_local_engines_bytes(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    base = dict(size=48, crops_per_image=4, shard_size=5, splits=SplitConfig(0.7, 0.1, 0.2))
    local = prepare(DataConfig(**base, engine="local", workers=1), tmp_path / "local")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = prepare(DataConfig(**base, engine="ray"), tmp_path / "ray")
    finally:
        ray.shutdown()
    assert on_ray.run.engine == "ray" and len(on_ray.run.chunk_nodes) > 1
    assert on_ray.run.nodes[0] != local.run.nodes[0]  # a Ray node id, not the host name
    assert _equal_but_run(on_ray, local)
    _same_files(tmp_path / "local", tmp_path / "ray")


@pytest.mark.slow
def test_prepare_stage_spreads_over_a_two_node_cluster(tmp_path: Path) -> None:
    """`python pipeline/prepare.py` with RAY_ADDRESS set (engine auto): both nodes compute chunks, and the
    result equals a local run byte for byte."""
    quick_params(tmp_path, data={"size": 48, "shard_size": 5})
    cluster = tmp_path / "data" / "prepared" / "sample"  # where the stage writes (the layout under the params' dir)
    with two_node_cluster() as (address, env):
        # The stage runs as DVC runs it: a fresh process (Ray reads its auth settings at import time).
        subprocess.run(
            [sys.executable, str(REPO / "pipeline" / "prepare.py"), "sample"],
            cwd=tmp_path,
            env={**env, "RAY_ADDRESS": address},
            check=True,
            timeout=600,
        )
    on_cluster = read_manifest(cluster)
    run = on_cluster.run
    assert run.engine == "ray" and run.workers == 2
    assert len(run.nodes) == 2 and set(run.chunk_nodes) == {0, 1}  # the head and the worker node both worked
    cfg = load_params(tmp_path / "params.yaml").dataset("sample")
    local = prepare(DataConfig(**{**cfg.__dict__, "engine": "local"}), tmp_path / "local")
    assert _equal_but_run(on_cluster, local)
    _same_files(tmp_path / "local", cluster)
