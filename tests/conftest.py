"""Shared test helpers: a params file for seconds-long runs on the embedded sample photos (`quick_params`), a
clone-like copy of this project in a fresh git repository (`git_project`), one local Ray instance for a
test module's Ray Train runs (`local_ray`) and a Ray cluster of two nodes started as a user starts one
(`two_node_cluster`)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

# Ray workers import the test recipe (tests.tiny_recipe) by module path.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def quick_params(tmp: Path, models: dict | None = None, prepared_in: Path | None = None, **sections) -> Path:
    """Write ``tmp/params.yaml`` for a seconds-long run: 64² sample crops (dataset ``sample``, prepared into
    ``tmp/data/prepared/sample``: the project root is the params file's directory), the tiny recipe, 2 Ray
    workers. ``data=`` overrides the sample dataset's settings; ``prepared_in``: another such project whose
    prepared data this one uses (linked, not prepared again)."""
    params = {
        "datasets": {
            "sample": {
                "size": 64,
                "crops_per_image": 4,
                "splits": {"train": 0.7, "val": 0.1, "test": 0.2},
                "workers": 1,
            }
        },
        "train": {
            "num_workers": 2,
            "log_every": 2,
            "image_every": 4,
            "checkpoint_every": 4,
            "storage_path": str(tmp / "ray"),
        },
        "evaluate": {"batch_size": 4, "fid": False},
        "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}"},
        "models": models
        or {"tiny": {"arch": "tests.tiny_recipe:TinyRecipe", "resolution": 32, "batch_size": 2, "steps": 8}},
    }
    for spec in params["models"].values():
        spec.setdefault("dataset", "sample")
    for key, value in sections.items():
        if key == "data":
            params["datasets"]["sample"].update(value)
        else:
            params[key] = {**params.get(key, {}), **value}
    tmp.mkdir(parents=True, exist_ok=True)
    if prepared_in is not None and prepared_in.resolve() != tmp.resolve():
        (tmp / "data").mkdir(parents=True, exist_ok=True)
        (tmp / "data" / "prepared").symlink_to((prepared_in / "data" / "prepared").resolve(), target_is_directory=True)
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def git_project(dst: Path) -> Path:
    """What a clone of this project holds (tracked files, plus new files not yet committed) in a fresh git
    repository (DVC needs Git). Tracked files stay tracked even where .gitignore matches them, as in a
    clone: a generated file committed by mistake then breaks `dvc repro` here as it would for a user."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    files = [rel for rel in listed if (REPO / rel).is_file()]  # deleted but not yet committed: skip
    for rel in files:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dst / rel)
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)
    subprocess.run(
        ["git", "add", "-f", "--pathspec-from-file=-"], cwd=dst, input="\n".join(files), text=True, check=True
    )
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], cwd=dst, check=True)
    return dst


def run_dvc(project: Path, *args: str, timeout: int = 900) -> str:
    """``dvc ARGS`` in ``project`` as a user runs it there: the project's own code first on the path (as in a clone
    whose virtual environment was installed from it; an editable install elsewhere would otherwise run that
    checkout's code) and the project root for ``tests.tiny_recipe``. Returns stdout; a failure shows the output."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": os.pathsep.join([str(project / "src"), str(project)]),
    }
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("dvc")), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray instance for a module's Ray Train runs, started as a lone train stage starts it
    (``run._connect_ray``). Every run then joins it, as `make repro`'s train stage joins the instance that
    `chromapipe ray-local` holds, instead of starting and stopping one of its own: the runs after the first
    also find Ray Train's autoscaling-coordinator actor and idle worker processes already there (seconds
    less per run: reports/benchmarks.md, "Ray Train's fixed cost per run")."""
    import ray

    from chromapipe.training.run import _connect_ray

    started = _connect_ray(num_cpus_needed=2)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


@contextlib.contextmanager
def two_node_cluster() -> Iterator[tuple[str, dict[str, str]]]:
    """A head and a worker node on localhost (1 CPU each), started with `ray start` as on a real cluster; yields
    the cluster's address and the environment a process needs to join it, and stops both nodes afterwards.
    Ray 2.60 clusters started by `ray start` require token authentication: every process gets the token.
    Skips the test where the ray CLI is not installed."""
    ray_cli = str(Path(sys.executable).with_name("ray"))
    if not shutil.which(ray_cli):
        pytest.skip("the ray CLI is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }
    start = [ray_cli, "start", "--disable-usage-stats", "--num-cpus=1", "--node-ip-address=127.0.0.1"]
    try:
        subprocess.run(
            [*start, "--head", f"--port={port}", "--include-dashboard=false"],
            check=True,
            env=env,
            capture_output=True,
            timeout=180,
        )
        subprocess.run([*start, f"--address={address}"], check=True, env=env, capture_output=True, timeout=180)
        yield address, env
    finally:
        subprocess.run([ray_cli, "stop", "--force"], env=env, capture_output=True, timeout=120)
