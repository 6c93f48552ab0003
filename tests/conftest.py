"""Shared test helpers: a params file for seconds-long runs on the embedded sample photos (`quick_params`) and a
clone-like copy of this project in a fresh git repository (`git_project`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

# Ray workers import the test recipe (tests.tiny_recipe) by module path.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def quick_params(tmp: Path, models: dict | None = None, **sections) -> Path:
    """Write a params.yaml for a seconds-long run: 64² sample crops (dataset ``sample``, prepared into
    ``tmp/data``), the tiny recipe, 2 Ray workers. ``data=`` overrides the sample dataset's settings."""
    params = {
        "datasets": {"sample": {"size": 64, "crops_per_image": 4, "out": str(tmp / "data"), "splits": {"train": 0.7, "val": 0.1, "test": 0.2}, "workers": 1}},
        "train": {"num_workers": 2, "log_every": 2, "image_every": 4, "checkpoint_every": 4, "storage_path": str(tmp / "ray"), "out": str(tmp / "models")},
        "evaluate": {"out": str(tmp / "evaluation"), "batch_size": 4, "fid": False},
        "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}"},
        "models": models or {"tiny": {"arch": "tests.tiny_recipe:TinyRecipe", "resolution": 32, "batch_size": 2, "steps": 8}},
    }
    for spec in params["models"].values():
        spec.setdefault("dataset", "sample")
    for key, value in sections.items():
        if key == "data":
            params["datasets"]["sample"].update(value)
        else:
            params[key] = {**params.get(key, {}), **value}
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def git_project(dst: Path) -> Path:
    """What a clone of this project holds (tracked files, plus new files not yet committed) in a fresh git
    repository (DVC needs Git). Tracked files stay tracked even where .gitignore matches them, as in a
    clone: a generated file committed by mistake then breaks `dvc repro` here as it would for a user."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    files = [rel for rel in listed if (REPO / rel).is_file()]  # deleted but not yet committed: skip
    for rel in files:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dst / rel)
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)
    subprocess.run(["git", "add", "-f", "--pathspec-from-file=-"], cwd=dst, input="\n".join(files), text=True, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], cwd=dst, check=True)
    return dst
