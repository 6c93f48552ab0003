"""The papers' data protocols on real photos: the thesis' saved split and gray rule, ChromaGAN's training set
(whole image at 224², gray and small photos kept, no flip), and dataset errors that name their key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from chromapipe.color import lab_to_rgb
from chromapipe.config import ConfigError, DataConfig, SplitConfig, load_params, parse_params
from chromapipe.data.decode import decode_rgb
from chromapipe.data.manifest import Manifest, Skip, read_manifest
from chromapipe.data.prepare import content_params, prepare
from chromapipe.data.shards import LabShardDataset
from chromapipe.training.sampling import GlobalBatchSampler
from tests import paper_layouts as layouts
from tests.conftest import REPO


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> tuple[Path, Path]:
    """Two scene classes of 12 real photos each (one class holds a mode-L photo) and the thesis' split CSV."""
    root = tmp_path_factory.mktemp("places") / "places205"
    a = layouts.pick(12, include=(layouts.GRAY_L,))
    b = layouts.pick(12, start=400)
    return layouts.places205(root, {"abbey": a, "beach": b})


def test_split_file_reproduces_its_assignment_exactly(places, tmp_path: Path) -> None:
    import pandas as pd

    root, csv = places
    table = pd.read_csv(csv)
    cfg = DataConfig(
        source="folder", root=str(root), size=64, resize="resize", split_file=str(csv),
        workers=1, gray_rule="channel_sums", keep_small=True,
    )  # fmt: skip
    manifest = prepare(cfg, tmp_path / "out", key="datasets.places205_10pct")
    for split in ("train", "val", "test"):  # the file's images, in the file's row order
        assert manifest.split(split).ids == table.loc[table["split"] == split, "file_name"].tolist(), split
    assert manifest.split("test").n_images == 3 and manifest.split("val").n_images == 2
    # the gray photo is under root but not in the file (the thesis dropped it before splitting): a logged skip
    gray = f"abbey/{Path(layouts.GRAY_L).name}"
    assert Skip(source=gray, reason="not_in_split_file", detail=f"not listed in {csv}") in manifest.skipped
    assert manifest.split_file is not None and manifest.split_file.sha256
    assert manifest.split_file.counts == {"train": 18, "val": 2, "test": 3}
    # class labels still come from the folders
    labels = LabShardDataset(tmp_path / "out", "test")
    assert {int(labels[i]["label"]) for i in range(len(labels))} <= {0, 1}


def test_split_file_rejects_a_path_not_in_the_dataset(places, tmp_path: Path) -> None:
    root, csv = places
    bad = tmp_path / "files_split.csv"
    bad.write_text(csv.read_text() + "abbey/not_there.jpg,abbey,test\n")
    cfg = DataConfig(source="folder", root=str(root), size=64, split_file=str(bad), workers=1)
    with pytest.raises(ConfigError) as err:
        prepare(cfg, tmp_path / "o", key="datasets.places205_10pct")
    assert "datasets.places205_10pct.split_file: 1 of the 24 paths" in str(err.value)
    assert "'abbey/not_there.jpg'" in str(err.value)
    bad.write_text("file_name,class\nabbey/x.jpg,abbey\n")
    with pytest.raises(ConfigError, match="split_file: .* lacks the column\\(s\\) split"):
        prepare(cfg, tmp_path / "o", key="datasets.places205_10pct")


def test_split_file_is_for_train_role_folder_sets_only() -> None:
    base = {"models": {"m": {"arch": "pix2pix", "dataset": "t", "steps": 1}}}
    for spec, message in (
        ({"source": "folder", "root": "/x", "role": "eval", "split_file": "s.csv"}, "datasets.e.split_file: only"),
        ({"source": "sample", "split_file": "s.csv"}, "datasets.e.split_file: needs source 'folder'"),
        ({"source": "folder", "root": "/x", "role": "eval", "keep_small": True}, "datasets.e.keep_small: only"),
        ({"ours": {"rezise": "typo"}}, "datasets.e.ours.rezise: not a setting"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_params({**base, "datasets": {"t": {}, "e": spec}})


def test_thesis_gray_rule_is_exact_equality(tmp_path: Path) -> None:
    """A real RGB photo whose channels differ in a few pixels: gray under the spread tolerance, color under the
    thesis' rule; a mode-L photo is gray under both."""
    root = layouts.imagenet_train(tmp_path / "train", [layouts.NEAR_GRAY_RGB, layouts.GRAY_L, *layouts.pick(2)])
    skipped = {}
    for rule in ("spread", "channel_sums"):
        cfg = DataConfig(
            source="folder", root=str(root), size=64, gray_rule=rule, workers=1, splits=SplitConfig(1.0, 0.0, 0.0)
        )
        manifest = prepare(cfg, tmp_path / rule)
        skipped[rule] = {s.source for s in manifest.skipped if s.reason == "grayscale"}
    assert skipped == {"spread": {layouts.NEAR_GRAY_RGB, layouts.GRAY_L}, "channel_sums": {layouts.GRAY_L}}


def test_chromagan_training_set_keeps_gray_and_small_photos_whole_and_unflipped(tmp_path: Path) -> None:
    """params-paper's ChromaGAN set, at a few photos: every photo kept (a 200x150 one upscaled, a mode-L one
    counted gray), each stored as the whole image squashed to 224² (no crop), and its model does not flip."""
    p = load_params(REPO / "params-paper.yaml")
    name = p.training_set("chromagan")
    paper = p.dataset(name)
    assert (paper.size, paper.resize, paper.keep_grayscale, paper.keep_small) == (224, "resize", True, True)
    assert not any(p.model(m).hflip for m in ("chromagan", "chromagan_no_class", "chromanet"))
    assert all(p.training_set(m) == name for m in ("chromagan", "chromagan_no_class", "chromanet"))

    rels = [layouts.SMALL, layouts.GRAY_L, *layouts.pick(2)]
    root = layouts.imagenet_train(tmp_path / "train", rels)
    cfg = DataConfig(**{**_fields(paper), "root": str(root), "workers": 1, "splits": SplitConfig(1.0, 0.0, 0.0)})
    manifest = prepare(cfg, tmp_path / "out")
    assert manifest.skipped == [] and manifest.split("train").n_images == 4
    assert (manifest.n_upscaled, manifest.n_grayscale) == (1, 1)
    data = LabShardDataset(tmp_path / "out", "train", resolution=224)
    sampler = GlobalBatchSampler(len(data), 1, seed=0, hflip=p.model("chromagan").hflip)
    small = manifest.split("train").ids.index(layouts.SMALL)
    whole = decode_rgb((root / layouts.SMALL).read_bytes(), 10**9)  # 150x200: squashed, not cropped
    expected = F.interpolate(whole[None].float(), size=(224, 224), mode="bilinear", antialias=True)[0]
    assert (expected - expected.flip(-1)).abs().mean() > 10.0  # an asymmetric photo: a flip would show
    draws = [d for step in range(16) for d in sampler.draws(step)]  # what the training loader asks for
    assert not any(flip for _, flip in draws) and {i for i, _ in draws} >= {small}  # p = 0.5 would flip about half
    for key in [d for d in draws if d[0] == small]:
        item = data[key]
        stored = lab_to_rgb(torch.cat([item["L"], item["ab"]])[None])[0] * 255
        assert (stored - expected).abs().mean() < 3.0  # storage rounding only


def _fields(cfg: DataConfig) -> dict:
    import dataclasses

    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}


def test_missing_root_names_the_dataset(tmp_path: Path) -> None:
    cfg = DataConfig(source="folder", root=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=r"^datasets\.imagenet_train\.root: .* is not a directory"):
        prepare(cfg, tmp_path / "o", key="datasets.imagenet_train")


def test_manifest_records_the_split_file(places, tmp_path: Path) -> None:
    root, csv = places
    cfg = DataConfig(source="folder", root=str(root), size=64, split_file=str(csv), workers=1, max_images=5)
    prepare(cfg, tmp_path / "o")
    manifest = read_manifest(tmp_path / "o")
    assert manifest.params == content_params(cfg) and "ours" not in manifest.params  # split_file among them
    assert manifest.split_file is not None and manifest.split_file.path == str(csv)
    assert sum(manifest.image_counts().values()) == 5  # max_images caps the rows
    assert Manifest.from_dict(json.loads(manifest.to_json())) == manifest
