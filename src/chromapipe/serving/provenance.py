"""What a registered version says about where it came from: its training data and the training code, each as a
short fingerprint, beside the config hash that names the run.

The config hash (``chromapipe.config_hash``) already covers both — it hashes the model's params, the data
fingerprint, the seed, the worker count and the code — but as one number it cannot tell a reader *what*
changed between two versions. These two can: equal data fingerprints mean the same prepared shards (their
params and checksums), equal code fingerprints the same training code (the train stage's import closure,
the closure ``dvc.yaml`` lists as the stage's deps). They hash the same inputs the train stage feeds into
the config hash, computed from the project at registration time — the register stage runs right after the
train stage on the same data and code, which is what the matching config hash attests.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path
from typing import Any

from chromapipe.codedeps import import_closure
from chromapipe.config import ModelConfig
from chromapipe.hashing import source_fingerprint

#: the train stage's script: its import closure is the training code
TRAIN_SCRIPT = Path(__file__).resolve().parents[3] / "pipeline" / "train.py"


def data_fingerprint(manifest: dict[str, Any]) -> str:
    """The training data: the params that shaped the shards and the training split's shard checksums."""
    facts = {"params": manifest["params"], "shards": [s["sha256"] for s in manifest["splits"]["train"]["shards"]]}
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def code_fingerprint(cfg: ModelConfig) -> str:
    """The training code: the train stage's import closure plus the recipe's own module (an arch given as
    ``module:Class`` may live outside the package)."""
    from chromapipe.models.registry import recipe_class

    entry = [TRAIN_SCRIPT] if TRAIN_SCRIPT.is_file() else []
    recipe_file = Path(inspect.getfile(recipe_class(cfg.arch))).resolve()
    return source_fingerprint(*sorted(import_closure(entry)), recipe_file)[:12]
