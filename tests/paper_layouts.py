"""The papers' dataset layouts in miniature, built from real photos (test helper, no fixtures).

Users point chromapipe's paper profile at their own copies of ImageNet, COCO-Stuff and the thesis' Places205
subset; these helpers build the same layouts from a few of the real ImageNet photos kept beside the project,
so tests exercise the real listing, file-list and split-file paths:

- ImageNet train: ``train/<synset>/<synset>_<name>.JPEG`` (class = folder);
- ImageNet val: one flat ``val/`` folder of ``ILSVRC2012_val_NNNNNNNN.JPEG`` files, with a ctest10k-style
  file list and ChromaGAN's first-1000 list (relative paths, one per line);
- COCO-Stuff val: one flat folder of ``000000NNNNNN.jpg`` files;
- the thesis' Places205 subset: ``<class>/<file>`` folders and the ``files_split.csv`` its pre-processing
  saved (scikit-learn's ``StratifiedShuffleSplit`` over the non-gray rows, as the thesis' code did).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO.parent / "shared" / "data" / "imagenet-sample"  # 800 real ImageNet photos, one per class

#: photos with known traits (checked: sizes, Pillow modes, channel sums)
SMALL = "n01753488/n01753488_horned_viper.JPEG"  # 200x150: smaller than 224 and 256
GRAY_L = "n02096051/n02096051_Airedale.JPEG"  # Pillow mode L
NEAR_GRAY_RGB = "n03141823/n03141823_crutch.JPEG"  # RGB, channel spread 0 at the 99th percentile, sums unequal


def photos() -> Path:
    """The real photos' folder; skips the test where it is not on this machine."""
    if not PHOTOS.is_dir():
        pytest.skip(f"{PHOTOS} (real photos) is not on this machine")
    return PHOTOS


def pick(n: int, start: int = 0, *, include: tuple[str, ...] = ()) -> list[str]:
    """``n`` photo paths (relative to :data:`PHOTOS`) in a fixed order: ``include`` first, then every other."""
    every = sorted(p.relative_to(photos()).as_posix() for p in photos().glob("*/*.JPEG"))
    rest = [p for p in every[start:] if p not in include]
    return [*include, *rest][:n]


def _copy(rel: str, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(photos() / rel, dst)


def imagenet_train(root: Path, rels: list[str]) -> Path:
    """``root/<synset>/<file>``: ImageNet's train layout."""
    for rel in rels:
        _copy(rel, root / rel)
    return root


def imagenet_val(root: Path, rels: list[str], ctest: int, first: int) -> tuple[Path, Path, Path]:
    """A flat val folder (``ILSVRC2012_val_%08d.JPEG``), a ctest10k-style list of every other file (up to
    ``ctest``) and a first-``first`` list; returns (folder, ctest list, first list)."""
    names = [f"ILSVRC2012_val_{i + 1:08d}.JPEG" for i in range(len(rels))]
    for rel, name in zip(rels, names):
        _copy(rel, root / name)
    ctest_list = root.parent / "ctest10k.txt"
    ctest_list.write_text("".join(f"{n}\n" for n in names[::2][:ctest]))
    first_list = root.parent / "val-first1000.txt"
    first_list.write_text("".join(f"{n}\n" for n in names[:first]))
    return root, ctest_list, first_list


def coco_val(root: Path, rels: list[str]) -> Path:
    """One flat folder of COCO-style file names."""
    for i, rel in enumerate(rels):
        _copy(rel, root / f"{139 + 7 * i:012d}.jpg")
    return root


def places205(root: Path, classes: dict[str, list[str]], seed: int = 123456) -> tuple[Path, Path]:
    """``root/<class>/<file>`` and ``root/files_split.csv`` written as the thesis' ``pre_processing.py`` did:
    gray rows dropped (its rule), then ``StratifiedShuffleSplit`` test 10 %, then val 5/90 of the rest, both
    with ``random_state=seed``; rows train, val, test. Returns (root, the CSV)."""
    import pandas as pd
    from PIL import Image, ImageStat
    from sklearn.model_selection import StratifiedShuffleSplit

    rows = []
    for cls, rels in classes.items():
        for rel in rels:
            name = f"{cls}/{Path(rel).name}"
            _copy(rel, root / name)
            with Image.open(root / name) as img:
                sums = ImageStat.Stat(img.convert("RGB")).sum
                gray = img.mode == "L" or sum(sums) / 3 == sums[0]
            rows.append({"file_name": name, "class": cls, "grayscale": gray})
    df = pd.DataFrame(rows)
    df = df[~df["grayscale"]].drop(columns=["grayscale"])
    outer = StratifiedShuffleSplit(n_splits=1, test_size=0.10, random_state=seed)
    inner = StratifiedShuffleSplit(n_splits=1, test_size=0.05 / 0.90, random_state=seed)
    train_val_idx, test_idx = next(outer.split(df, df["class"]))
    train_val, test = df.iloc[train_val_idx], df.iloc[test_idx]
    train_idx, val_idx = next(inner.split(train_val, train_val["class"]))
    parts = [train_val.iloc[train_idx], train_val.iloc[val_idx], test]
    out = pd.concat([p.assign(split=name) for p, name in zip(parts, ("train", "val", "test"))])
    csv = root / "files_split.csv"
    out.to_csv(csv, index=False)
    return root, csv
