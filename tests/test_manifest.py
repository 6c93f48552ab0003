"""The manifest record (chromapipe.data.manifest): round trip, the /2 files written before it, training's data
fingerprint unchanged, and errors that name the file and what is wrong."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chromapipe.config import config_hash
from chromapipe.data.manifest import FORMAT, Manifest, ManifestError, read_manifest
from chromapipe.layout import MANIFEST_FILE

LAB0, LABELS0 = "shard-00000.lab8.npy", "shard-00000.labels.npy"
LAB1, LABELS1 = "shard-00001.lab8.npy", "shard-00001.labels.npy"

#: a chromapipe-shards/2 manifest as the dict-writing prepare stage wrote it (a folder source, two crops per photo,
#: a split file, one photo skipped): every key it had, the top-level n_sources included
V2: dict[str, Any] = {
    "format": "chromapipe-shards/2",
    "params": {
        "source": "folder", "root": "/data/photos", "file_list": None, "size": 64, "resize": "center_crop",
        "crops_per_image": 2, "grayscale_tolerance": 2.0, "min_colorfulness": 0.0, "max_pixels": 178956970,
        "splits": {"train": 0.8, "val": 0.1, "test": 0.1}, "seed": 123456, "shard_size": 2, "encoding": "lab8",
        "role": "train", "max_images": None, "keep_grayscale": False, "keep_small": False, "gray_rule": "spread",
        "split_file": "/data/files_split.csv",
    },
    "role": "train",
    "classes": ["cats", "cups"],
    "n_sources": 4,
    "n_listed": 4,
    "splits": {
        "train": {
            "n_images": 4,
            "n_sources": 2,
            "shards": [
                {
                    "lab": LAB0, "labels": LABELS0, "n": 2,
                    "sha256": {
                        LAB0: "7615319b376a679745a167c38345d031f066953238d2a7b195647bf43eaf6dfe",
                        LABELS0: "a4c2d4a44a384f88e6e1d88b4351a66474a9701c6fcad4e7a8fbafbb7cd189c5",
                    },
                    "ids": ["cats/a.jpg#0", "cats/a.jpg#1"],
                },
                {
                    "lab": LAB1, "labels": LABELS1, "n": 2,
                    "sha256": {
                        LAB1: "cd1629e3a099ed1e136217e743f3fe2a0f4fba067fd9784ccf9beafc847df6e0",
                        LABELS1: "b77daa8d11d16b086e1e0d82c1efdee10fea474648759e1db34e810899536f2a",
                    },
                    "ids": ["cups/b.jpg#0", "cups/b.jpg#1"],
                },
            ],
        },
        "val": {
            "n_images": 2,
            "n_sources": 1,
            "shards": [
                {
                    "lab": LAB0, "labels": LABELS0, "n": 2,
                    "sha256": {
                        LAB0: "2b3140ef6035e859411cfd500007d6e6ad84e3381d389cf65f49a8ac86357f71",
                        LABELS0: "24d156ba86f2378371d2f2a774a024845b9d899409819d6b0d679777916d0131",
                    },
                    "ids": ["cats/c.jpg#0", "cats/c.jpg#1"],
                }
            ],
        },
        "test": {"n_images": 0, "n_sources": 0, "shards": []},
    },
    "skipped": [{"source": "cups/d.png", "reason": "grayscale", "detail": "channel spread 0.0 <= 2.0"}],
    "skipped_by_reason": {"grayscale": 1},
    "n_unreadable": 0,
    "n_grayscale": 1,
    "n_upscaled": 0,
    "storage": {
        "encoding": "lab8", "dtype": "uint8", "bytes_per_image": 12288,
        "layout": "N,3,S,S (L*·255/100, a*+128, b*+128), uint8, OpenCV's 8-bit Lab",
    },
    "lab_roundtrip_max_abs_uint8": 14,
    "roundtrip_sample": "every 8th row and column of every stored image",
    "run": {
        "engine": "local", "workers": 2, "chunk_size": 1, "nodes": ["vm"], "chunk_nodes": [0, 0, 0, 0],
        "seconds": 0.42, "images_per_s": 9.5, "worker_seconds": 0.61,
    },
    "split_file": {
        "path": "/data/files_split.csv",
        "sha256": "ad1a64057f9ab34fecfe3f4ee78660bb0316dbda9370581ffbeb1e8bddf3d598",
        "rows": 4,
        "counts": {"train": 2, "val": 1, "test": 1},
    },
}  # fmt: skip

#: config_hash(run._data_fingerprint(V2)) computed by the dict-reading training code before the record existed
#: (main at adf0c86): the part of every training run's name that comes from the data
V2_FINGERPRINT_HASH = "b0071396a5f8"


def _v2() -> dict[str, Any]:
    return copy.deepcopy(V2)


def _write(root: Path, raw: Any) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST_FILE).write_text(raw if isinstance(raw, str) else json.dumps(raw, indent=1))
    return root


def test_a_v2_file_reads_with_every_field_as_an_attribute(tmp_path: Path) -> None:
    m = read_manifest(_write(tmp_path, V2))
    assert (m.role, m.classes, m.n_listed, m.n_unreadable, m.n_grayscale, m.n_upscaled) == (
        "train", ["cats", "cups"], 4, 0, 1, 0,
    )  # fmt: skip
    assert not hasattr(m, "n_sources")  # the top-level duplicate of n_listed is gone
    train = m.split("train")
    assert (train.n_images, train.n_sources, len(train.shards)) == (4, 2, 2)  # crops vs photos
    assert train.shards[1].lab == LAB1 and train.shards[1].labels == LABELS1 and train.shards[1].n == 2
    assert train.ids == ["cats/a.jpg#0", "cats/a.jpg#1", "cups/b.jpg#0", "cups/b.jpg#1"]
    assert m.image_counts() == {"train": 4, "val": 2, "test": 0}
    assert (m.skipped[0].source, m.skipped[0].reason) == ("cups/d.png", "grayscale")
    assert m.skipped_by_reason == {"grayscale": 1}
    assert (m.storage.encoding, m.storage.dtype, m.storage.bytes_per_image) == ("lab8", "uint8", 12288)
    assert m.size == 64 and m.lab_roundtrip_max_abs_uint8 == 14
    assert (m.run.engine, m.run.workers, m.run.chunk_nodes, m.run.images_per_s) == ("local", 2, [0, 0, 0, 0], 9.5)
    assert m.split_file is not None and m.split_file.counts == {"train": 2, "val": 1, "test": 1}
    with pytest.raises(KeyError, match="'holdout' not in the manifest"):
        m.split("holdout")


def test_a_manifest_round_trips(tmp_path: Path) -> None:
    m = Manifest.from_dict(_v2())
    m.write(tmp_path)
    back = read_manifest(tmp_path)
    assert back == m
    on_disk = json.loads((tmp_path / MANIFEST_FILE).read_text())
    expected = {k: v for k, v in V2.items() if k != "n_sources"} | {"format": FORMAT}
    assert on_disk == expected and list(on_disk) == list(expected)  # the same keys, in the same order
    assert (tmp_path / MANIFEST_FILE).read_text() == back.to_json()  # and stable: a rewrite is byte-identical
    without_split_file = Manifest.from_dict({k: v for k, v in V2.items() if k != "split_file"})
    assert without_split_file.split_file is None and "split_file" not in without_split_file.to_dict()


def test_the_data_fingerprint_is_the_one_training_hashed_before(tmp_path: Path) -> None:
    """Training names its runs with config_hash(..., data fingerprint, ...): an unchanged dataset, read through
    the record, must give the value the dict manifest gave, or every finished run would train again."""
    legacy = {"params": V2["params"], "shards": [s["sha256"] for s in V2["splits"]["train"]["shards"]]}
    m = read_manifest(_write(tmp_path / "v2", V2))
    assert m.data_fingerprint() == legacy
    assert config_hash(m.data_fingerprint()) == config_hash(legacy) == V2_FINGERPRINT_HASH
    m.write(tmp_path / "v3")
    assert config_hash(read_manifest(tmp_path / "v3").data_fingerprint()) == V2_FINGERPRINT_HASH  # /3 keeps it


def test_a_missing_manifest_says_to_run_the_prepare_stage(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"manifest\.json: no prepared data \(run the prepare stage") as err:
        read_manifest(tmp_path)
    assert isinstance(err.value, ManifestError) and str(tmp_path / MANIFEST_FILE) in str(err.value)


def _set(path: str, value: Any) -> Any:
    """A mutation of V2: set the value at a dotted path (list indices as numbers); ``...`` deletes the key."""

    def mutate(raw: dict[str, Any]) -> dict[str, Any]:
        *parents, last = path.split(".")
        node: Any = raw
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if value is ...:
            del node[last]
        else:
            node[last] = value
        return raw

    return mutate


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda raw: "{not json", r"not valid JSON"),
        (lambda raw: [raw], r"not a manifest \(expected a JSON object, got list\)"),
        (_set("format", ...), r"no 'format' key"),
        (_set("format", "chromapipe-lab-shards/1"), r"format 'chromapipe-lab-shards/1' is not one this version reads"),
        (_set("role", ...), r"role: required key is missing"),
        (_set("role", "holdout"), r"role: 'holdout' is not allowed; expected one of 'train', 'eval'"),
        (_set("splits.train.shards.0.n", "2"), r"splits\.train\.shards\[0\]\.n: expected an integer"),
        (_set("storage.encoding", ...), r"storage\.encoding: required key is missing"),
        (_set("shards", []), r"shards: unknown key"),
        (_set("splits.val.n_images", 3), r"splits\.val: n_images is 3 but its shards hold 2 images"),
        (_set("splits.val.shards.0.ids", ["x"]), r"splits\.val\.shards\[0\]: n is 2 but it lists 1 ids"),
        (_set("skipped_by_reason", {"corrupt": 1}), r"skipped_by_reason .* does not match the skipped list"),
    ],
)
def test_a_malformed_manifest_names_the_file_and_what_is_wrong(tmp_path: Path, mutate, message: str) -> None:
    _write(tmp_path, mutate(_v2()))
    with pytest.raises(ManifestError, match=message) as err:
        read_manifest(tmp_path)
    assert str(err.value).startswith(f"{tmp_path / MANIFEST_FILE}: ") and "prepare stage" in str(err.value)


def test_reading_a_manifest_does_not_import_torch(tmp_path: Path) -> None:
    """The report stage and tools that only inspect a dataset read manifests without torch or numpy."""
    _write(tmp_path, V2)
    code = (
        "import sys; from pathlib import Path; from chromapipe.data.manifest import read_manifest; "
        "read_manifest(Path(sys.argv[1])).data_fingerprint(); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'yaml')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
