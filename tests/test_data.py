"""Preparation: the skip rules on real bad files, split integrity, and the shard round trip."""

from __future__ import annotations

import dataclasses
import io
import struct
import zlib
from pathlib import Path
from unittest.mock import ANY

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from chromapipe.color import lab_to_rgb_uint8
from chromapipe.config import DataConfig, SplitConfig
from chromapipe.data.decode import SkipImage, decode_rgb
from chromapipe.data.encoding import storage_format
from chromapipe.data.manifest import Manifest, RunFacts, Split, read_manifest
from chromapipe.data.prepare import prepare
from chromapipe.data.shards import LabShardDataset, ShardWriter
from chromapipe.data.splits import assign_splits
from chromapipe.hashing import sha256_file


def _png16(rgb16: np.ndarray) -> bytes:
    """A 16-bit RGB PNG written by hand (Pillow cannot write 16-bit RGB)."""
    h, w, _ = rgb16.shape
    raw = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)  # noqa: E731
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _save(img: Image.Image, path: Path, fmt: str, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt, **kw)
    return path


@pytest.fixture(scope="module")
def source_tree(tmp_path_factory) -> Path:
    """An ImageFolder tree with good and bad files of every kind the skip rules must handle."""
    root = tmp_path_factory.mktemp("src")
    astro = Image.fromarray(skimage.data.astronaut()).resize((96, 96))
    coffee = Image.fromarray(skimage.data.coffee()).resize((120, 80))
    chelsea = Image.fromarray(skimage.data.chelsea()).resize((90, 70))
    good = {
        "cats/rgb.jpg": lambda p: _save(chelsea, p, "JPEG", quality=95),
        "cats/palette.png": lambda p: _save(astro.convert("P", palette=Image.Palette.ADAPTIVE), p, "PNG"),
        "cats/alpha.png": lambda p: _save(astro.convert("RGBA"), p, "PNG"),
        "cups/cmyk.jpg": lambda p: _save(coffee.convert("CMYK"), p, "JPEG"),
        "cups/sixteen.png": lambda p: p.write_bytes(_png16(np.asarray(coffee).astype(np.uint16) * 257)),
        "cups/plain.bmp": lambda p: _save(coffee, p, "BMP"),
    }
    jpeg = io.BytesIO()
    chelsea.save(jpeg, "JPEG")
    bad = {
        "cats/gray.png": (lambda p: _save(astro.convert("L"), p, "PNG"), "grayscale"),
        "cats/gray_as_rgb.jpg": (
            lambda p: _save(astro.convert("L").convert("RGB"), p, "JPEG", quality=90),
            "grayscale",
        ),
        "cats/tiny.png": (lambda p: _save(astro.resize((40, 40)), p, "PNG"), "too_small"),
        "cups/truncated.jpg": (lambda p: p.write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2]), "corrupt"),
        "cups/garbage.jpg": (lambda p: p.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64), "corrupt"),
        "cups/notes.txt": (lambda p: p.write_text("not an image"), "not_an_image"),
    }
    for rel, make in good.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        make(p)
    for rel, (make, _) in bad.items():
        make(root / rel)
    (root / "expected.txt").write_text("\n".join(f"{rel} {reason}" for rel, (_, reason) in bad.items()))
    return root


def test_skip_rules_record_every_bad_file_and_keep_every_good_one(source_tree: Path, tmp_path: Path) -> None:
    cfg = DataConfig(source="folder", root=str(source_tree), size=64, splits=SplitConfig(1.0, 0.0, 0.0))
    (source_tree / "expected.txt").rename(tmp_path / "expected.txt")
    try:
        manifest = prepare(cfg, tmp_path / "out")
    finally:
        (tmp_path / "expected.txt").rename(source_tree / "expected.txt")
    expected = dict(line.split() for line in (source_tree / "expected.txt").read_text().splitlines())
    skipped = {s.source: s.reason for s in manifest.skipped}
    assert skipped == expected
    kept = set(manifest.split("train").ids)
    assert kept == {
        "cats/rgb.jpg",
        "cats/palette.png",
        "cats/alpha.png",
        "cups/cmyk.jpg",
        "cups/sixteen.png",
        "cups/plain.bmp",
    }
    assert manifest.classes == ["cats", "cups"]
    assert manifest.lab_roundtrip_max_abs_uint8 <= 1


def test_sixteen_bit_and_cmyk_decode_to_the_right_colors() -> None:
    coffee = skimage.data.coffee()[:64, :64]
    rgb16 = decode_rgb(_png16(coffee.astype(np.uint16) * 257), max_pixels=10**8)
    assert rgb16.dtype == torch.uint8 and torch.equal(rgb16, torch.from_numpy(coffee).permute(2, 0, 1))
    buf = io.BytesIO()
    Image.fromarray(coffee).convert("CMYK").save(buf, "JPEG", quality=95)
    cmyk = decode_rgb(buf.getvalue(), max_pixels=10**8)
    assert (cmyk.float() - torch.from_numpy(coffee).permute(2, 0, 1).float()).abs().mean() < 12  # JPEG loss only


def test_huge_image_is_refused_before_decoding() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (4000, 3000), (200, 30, 30)).save(buf, "PNG")
    with pytest.raises(SkipImage) as err:
        decode_rgb(buf.getvalue(), max_pixels=1_000_000)
    assert err.value.code == "too_large"


def test_splits_are_by_photo_stratified_and_deterministic() -> None:
    groups = [(f"c{c}/img{i}", c) for c in range(3) for i in range(20)]
    a = assign_splits(groups + groups[:5], SplitConfig(0.8, 0.1, 0.1), seed=7)
    assert a == assign_splits(list(reversed(groups)), SplitConfig(0.8, 0.1, 0.1), seed=7)
    assert a != assign_splits(groups, SplitConfig(0.8, 0.1, 0.1), seed=8)
    for c in range(3):
        splits = [a[g] for g, label in groups if label == c]
        assert (splits.count("train"), splits.count("val"), splits.count("test")) == (16, 2, 2)


def test_sample_set_crops_stay_in_their_photos_split(tmp_path: Path) -> None:
    cfg = DataConfig(size=64, crops_per_image=4, shard_size=5, splits=SplitConfig(0.7, 0.1, 0.2))
    manifest = prepare(cfg, tmp_path / "prep")
    photo_split: dict[str, str] = {}
    for split, info in manifest.splits.items():
        assert info.n_images == sum(s.n for s in info.shards)
        for shard in info.shards:
            assert shard.n <= 5  # bounded by shard_size
            for ident in shard.ids:
                photo = ident.split("#")[0]
                assert photo_split.setdefault(photo, split) == split
    assert len(photo_split) == 9 and not manifest.skipped
    assert sorted(manifest.splits) == ["test", "train", "val"]
    assert {s: sum(v == s for v in photo_split.values()) for s in ("train", "val", "test")} == {
        "train": 6,
        "val": 1,
        "test": 2,
    }
    assert manifest.storage.bytes_per_image == 64 * 64 * 3 * 2
    ds = LabShardDataset(tmp_path / "prep", "train", resolution=32)
    item = ds[len(ds) - 1]
    assert item["L"].shape == (1, 32, 32) and item["ab"].shape == (2, 32, 32) and int(item["label"]) == -1
    assert 0 <= float(item["L"].min()) and float(item["L"].max()) <= 100


def test_shard_round_trip(tmp_path: Path) -> None:
    rgb = torch.from_numpy(skimage.data.astronaut()[:32, :32]).permute(2, 0, 1)
    from chromapipe.color import rgb_uint8_to_lab

    writer = ShardWriter(tmp_path / "train", shard_size=2)
    for i in range(3):
        writer.add(rgb_uint8_to_lab(rgb), label=i, ident=f"img{i}")
    shards = writer.finish()
    assert [s.n for s in shards] == [2, 1]
    Manifest(
        params={"size": 32, "encoding": "float16"},
        role="train",
        classes=[],
        n_listed=3,
        splits={"train": Split(n_images=3, n_sources=3, shards=shards)},
        skipped=[],
        n_unreadable=0,
        n_grayscale=0,
        n_upscaled=0,
        storage=storage_format("float16").describe(32),
        lab_roundtrip_max_abs_uint8=0,
        roundtrip_sample="not measured",
        run=RunFacts("local", 1, 3, ["here"], [0], 0.0, None, 0.0),
    ).write(tmp_path)
    ds = LabShardDataset(tmp_path, "train")
    assert len(ds) == 3 and [int(ds[i]["label"]) for i in range(3)] == [0, 1, 2]
    back = lab_to_rgb_uint8(torch.cat([ds[2]["L"], ds[2]["ab"]]))
    assert int((back.int() - rgb.int()).abs().max()) <= 1
    (first, _) = read_manifest(tmp_path).split("train").shards
    assert first.sha256 == {first.lab: sha256_file(tmp_path / "train" / first.lab), first.labels: ANY}
    assert all(len(d) == 64 for d in first.sha256.values())


def test_nearly_gray_images_are_dropped_by_min_colorfulness(tmp_path: Path) -> None:
    vivid = np.asarray(Image.fromarray(skimage.data.coffee()).resize((96, 64)))
    muted = (0.93 * vivid.mean(axis=2, keepdims=True) + 0.07 * vivid).astype(np.uint8)  # a faint tint
    root = tmp_path / "src"
    root.mkdir()
    Image.fromarray(vivid).save(root / "vivid.png")
    Image.fromarray(muted).save(root / "muted.png")
    cfg = DataConfig(
        source="folder",
        root=str(root),
        size=64,
        min_colorfulness=10.0,
        splits=SplitConfig(1.0, 0.0, 0.0),
    )
    manifest = prepare(cfg, tmp_path / "out")
    assert [(s.source, s.reason) for s in manifest.skipped] == [("muted.png", "low_colorfulness")]
    assert manifest.split("train").n_images == 1


def test_exif_orientation_is_applied() -> None:
    img = Image.fromarray(skimage.data.astronaut()[:60, :100])  # 100 wide, 60 tall
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif, quality=95)
    rgb = decode_rgb(buf.getvalue(), max_pixels=10**8)
    assert tuple(rgb.shape) == (3, 100, 60)  # displayed upright: taller than wide


# --- splits that meet the ratios ---------------------------------------------------------------------


def _counts(
    assignment: dict[str, str], groups: list[tuple[str, int]] | None = None, label: int | None = None
) -> dict[str, int]:
    names = [s for g, s in assignment.items() if label is None or (g, label) in set(groups or [])]
    return {s: names.count(s) for s in ("train", "val", "test")}


def test_one_photo_per_class_meets_the_ratios_within_one_photo() -> None:
    """ImageNet-sample shape: 800 classes of one photo each. Per-class rounding sent all 800 to train."""
    groups = [(f"n{c:05d}/photo.jpg", c) for c in range(800)]
    ratios = SplitConfig(0.8, 0.1, 0.1)
    a = assign_splits(groups, ratios, seed=123456)
    assert a == assign_splits(list(reversed(groups)), ratios, seed=123456)
    counts = _counts(a)
    assert all(abs(counts[s] - 800 * getattr(ratios, s)) <= 1 for s in counts), counts
    for n in (1, 2, 3, 7, 10, 33, 101):  # any size: each split within one photo of n * ratio
        c = _counts(assign_splits(groups[:n], SplitConfig(0.7, 0.1, 0.2), seed=1))
        assert abs(c["train"] - 0.7 * n) <= 1 and abs(c["val"] - 0.1 * n) <= 1 and abs(c["test"] - 0.2 * n) <= 1, (n, c)


def test_large_classes_stay_stratified_beside_small_ones() -> None:
    big = [(f"c{c}/img{i}", c) for c, n in ((0, 50), (1, 30), (2, 120)) for i in range(n)]
    singles = [(f"s{c}/only", 100 + c) for c in range(40)]
    for groups in (big, big + singles):
        a = assign_splits(groups, SplitConfig(0.8, 0.1, 0.1), seed=3)
        total = _counts(a)
        assert all(abs(total[s] - len(groups) * r) <= 1 for s, r in (("train", 0.8), ("val", 0.1), ("test", 0.1))), (
            total
        )
        for c, n in ((0, 50), (1, 30), (2, 120)):
            per_class = [a[g] for g, label in groups if label == c]
            for s, r in (("train", 0.8), ("val", 0.1), ("test", 0.1)):
                assert abs(per_class.count(s) - n * r) < 2, (c, s, per_class.count(s))


def test_a_zero_ratio_gives_its_split_nothing() -> None:
    for n in range(1, 40):
        groups = [(f"g{i}", i % 3) for i in range(n)]
        assert _counts(assign_splits(groups, SplitConfig(0.9, 0.0, 0.1), seed=5))["val"] == 0
        assert _counts(assign_splits(groups, SplitConfig(1.0, 0.0, 0.0), seed=5)) == {"train": n, "val": 0, "test": 0}
        assert _counts(assign_splits(groups, SplitConfig(0.0, 0.5, 0.5), seed=5))["train"] == 0


# --- encodings -----------------------------------------------------------------------------------------


def test_every_encoding_reads_back_the_same_lab_within_its_stated_bound(tmp_path: Path) -> None:
    """Real photos (the sample set) in each encoding: the manifest says what is stored, the dataset returns
    float L*a*b* for all, and every pixel converts back to the source crop's sRGB within ROUNDTRIP_BOUND
    (rgb8 holds the source crop itself, so it is the reference)."""
    from chromapipe.data.encoding import ROUNDTRIP_BOUND

    base = dict(size=48, crops_per_image=4, splits=SplitConfig(1.0, 0.0, 0.0), workers=1)
    manifests = {enc: prepare(DataConfig(**base, encoding=enc), tmp_path / enc) for enc in ("rgb8", "float16", "lab8")}
    source = np.concatenate([np.load(tmp_path / "rgb8/train" / s.lab) for s in manifests["rgb8"].split("train").shards])
    assert source.dtype == np.uint8 and source.shape == (36, 3, 48, 48)
    reference = LabShardDataset(tmp_path / "float16", "train")
    for enc, manifest in manifests.items():
        storage = manifest.storage
        assert (storage.encoding, storage.dtype) == (enc, "float16" if enc == "float16" else "uint8")
        assert storage.bytes_per_image == 48 * 48 * 3 * (2 if enc == "float16" else 1)
        assert manifest.lab_roundtrip_max_abs_uint8 <= ROUNDTRIP_BOUND[enc]
        ds = LabShardDataset(tmp_path / enc, "train")
        assert len(ds) == 36
        worst = 0
        for i in range(len(ds)):
            item = ds[i]
            assert item["L"].dtype == torch.float32 and item["ab"].shape == (2, 48, 48)
            back = lab_to_rgb_uint8(torch.cat([item["L"], item["ab"]]))
            worst = max(worst, int((back.int() - torch.from_numpy(source[i]).int()).abs().max()))
            gap = (torch.cat([item["L"], item["ab"]]) - torch.cat([reference[i]["L"], reference[i]["ab"]])).abs().max()
            assert float(gap) < (0.7 if enc == "lab8" else 0.07)  # lab8: half a step; float16 rounding otherwise
        assert worst <= ROUNDTRIP_BOUND[enc], (enc, worst)


def test_shards_do_not_depend_on_the_number_of_workers(tmp_path: Path) -> None:
    """In-process and a two-process pool write byte-identical shards and manifests (but for ``run``)."""
    base = dict(size=48, crops_per_image=4, shard_size=5, splits=SplitConfig(0.7, 0.1, 0.2))
    one = prepare(DataConfig(**base, workers=1), tmp_path / "one")
    two = prepare(DataConfig(**base, workers=2), tmp_path / "out")
    assert (one.run.workers, two.run.workers) == (1, 2)
    assert dataclasses.replace(one, run=two.run) == two
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.npy"))
    assert len(files) == 2 * sum(len(s.shards) for s in one.splits.values())
    assert all((tmp_path / "one" / f).read_bytes() == (tmp_path / "out" / f).read_bytes() for f in files)
    assert "workers" not in one.params and "engine" not in one.params


# --- evaluation sets -------------------------------------------------------------------------------------


@pytest.mark.parametrize("resize", ["resize", "center_crop"])
def test_eval_role_keeps_every_readable_listed_image(tmp_path: Path, resize: str) -> None:
    """role eval: a small photo is upscaled, gray ones are kept, nothing is filtered; a listed file that is
    missing or damaged is recorded with its reason; everything goes to test; the counts add up."""
    root = tmp_path / "set"
    coffee = Image.fromarray(skimage.data.coffee())
    _save(coffee.resize((120, 80)), root / "a/wide.jpg", "JPEG", quality=90)
    _save(coffee.resize((40, 30)), root / "a/small.png", "PNG")
    _save(coffee.resize((70, 70)).convert("L"), root / "b/gray.png", "PNG")
    _save(coffee.resize((80, 64)).convert("L").convert("RGB"), root / "b/gray_rgb.jpg", "JPEG", quality=90)
    _save(Image.fromarray(skimage.data.chelsea()).resize((500, 400)), root / "b/large.jpg", "JPEG", quality=90)
    (root / "b/broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)
    listed = ["a/wide.jpg", "a/small.png", "b/gray.png", "b/gray_rgb.jpg", "b/large.jpg", "b/broken.jpg", "b/gone.jpg"]
    (tmp_path / "list.txt").write_text("\n".join(listed) + "\n")
    cfg = DataConfig(
        source="folder",
        root=str(root),
        file_list=str(tmp_path / "list.txt"),
        role="eval",
        size=64,
        resize=resize,
        min_colorfulness=50.0,
        workers=1,
    )
    manifest = prepare(cfg, tmp_path / "out")
    assert (manifest.role, manifest.n_listed, manifest.n_unreadable) == ("eval", 7, 2)
    assert {s.source: s.reason for s in manifest.skipped} == {
        "b/broken.jpg": "corrupt",
        "b/gone.jpg": "missing",
    }
    assert (manifest.n_upscaled, manifest.n_grayscale) == (1, 2)
    counts = manifest.image_counts()
    assert counts["train"] == counts["val"] == 0
    assert counts["test"] == manifest.n_listed - manifest.n_unreadable == 5
    kept = manifest.split("test").ids
    assert kept == ["a/wide.jpg", "a/small.png", "b/gray.png", "b/gray_rgb.jpg", "b/large.jpg"]  # listing order
    ds = LabShardDataset(tmp_path / "out", "test")
    assert all(ds[i]["L"].shape == (1, 64, 64) for i in range(len(ds)))
    assert float(ds[2]["ab"].abs().max()) < 1.0  # the gray photo stays gray


def test_eval_role_rejects_several_crops_per_image() -> None:
    from chromapipe.config import ConfigError, parse_params

    base = {
        "datasets": {"hold": {"role": "eval", "crops_per_image": 4}, "sample": {"size": 64}},
        "models": {"m": {"arch": "pix2pix", "dataset": "sample", "resolution": 64, "steps": 1}},
    }
    with pytest.raises(ConfigError, match="crops_per_image: must be 1"):
        parse_params(base)
    base["datasets"]["hold"].update(crops_per_image=1, workers=0)
    with pytest.raises(ConfigError, match="workers: must be > 0"):
        parse_params(base)
    base["datasets"]["hold"].update(workers="auto", engine="ray", encoding="rgb8")
    assert parse_params(base).dataset("hold").workers == "auto"


def test_reduced_jpeg_decoding_keeps_the_needed_size() -> None:
    """A JPEG much larger than the target is decoded at 1/2..1/8 scale, never below the needed side,
    EXIF orientation still applied; the result is deterministic."""
    img = Image.fromarray(skimage.data.astronaut()).resize((1000, 600))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif, quality=92)
    full = decode_rgb(buf.getvalue(), max_pixels=10**8)
    reduced = decode_rgb(buf.getvalue(), max_pixels=10**8, min_short=140)
    assert tuple(full.shape) == (3, 1000, 600) and tuple(reduced.shape) == (3, 250, 150)  # 1/4: 600 -> 150 >= 140
    assert torch.equal(reduced, decode_rgb(buf.getvalue(), max_pixels=10**8, min_short=140))
    small = torch.nn.functional.interpolate(full[None].float(), size=(250, 150), mode="area")[0]
    assert float((reduced.float() - small).abs().mean()) < 4  # the same picture, reduced
