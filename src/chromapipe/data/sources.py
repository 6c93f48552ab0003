"""Where training images come from: the embedded sample set, or an ImageFolder tree.

A :class:`SourceImage` is a file path plus its class and its *group*: the original photo it comes from.
Splits are made over groups, so no photo (and no crop of a photo) lands in two splits.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from chromapipe.config import ConfigError, DataConfig, resolve_path


@dataclass(frozen=True)
class SourceImage:
    path: Path
    id: str  # stable identifier: relative path (folder) or package:file (sample)
    label: int  # class index, -1 when the source has no classes
    group: str  # the source photo; every crop of one photo shares it


def _package_dir(module: str) -> Path:
    """The directory of an installed (sub)package, found without importing it: importing scikit-learn's
    or matplotlib's dataset modules costs seconds, and only their files are needed."""
    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)  # a top-level spec is found without executing the package
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"data.source: 'sample' needs the package {top!r}, which is not installed")
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*rest)


# Color photographs that ship inside installed packages (public domain / CC0; sklearn's two CC-BY-2.0).
# motorcycle_right is left out: it is the other half of a stereo pair and would leak across splits.
SAMPLE_FILES: tuple[tuple[str, str], ...] = (
    ("skimage.data", "astronaut.png"),
    ("skimage.data", "chelsea.png"),
    ("skimage.data", "coffee.png"),
    ("skimage.data", "rocket.jpg"),
    ("skimage.data", "motorcycle_left.png"),
    ("skimage.data", "hubble_deep_field.jpg"),
    ("sklearn.datasets.images", "china.jpg"),
    ("sklearn.datasets.images", "flower.jpg"),
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
)


def sample_images() -> list[SourceImage]:
    """The embedded sample set, read from the installed packages (never copied into the repository)."""
    images = []
    for module, rel in SAMPLE_FILES:
        path = _package_dir(module) / rel
        if not path.exists():
            raise ConfigError(f"data.source: sample image {module}:{rel} is missing from the installed package")
        ident = f"{module}:{rel}"
        images.append(SourceImage(path=path, id=ident, label=-1, group=ident))
    return images


def _read_file_list(path: Path) -> list[str]:
    """A list of relative paths, one per line (ImageNet's ctest10k.txt style); '#' comments allowed."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [ln.split()[0] for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def folder_images(
    root: Path, file_list: Path | None = None, key: str = "datasets.<name>"
) -> tuple[list[SourceImage], list[str]]:
    """An ImageFolder tree: class = first-level subfolder (files directly under root have no class).

    Every regular file is a candidate: whether it is an image is decided by decoding, so a stray
    non-image file is recorded as skipped instead of silently ignored. Returns (images, class names).
    ``key``: the dataset's key path in params, for error messages (``datasets.<name>``).
    """
    if not root.is_dir():
        raise ConfigError(f"{key}.root: {root} is not a directory")
    if file_list is not None:
        if not file_list.exists():
            raise ConfigError(f"{key}.file_list: {file_list} not found")
        files = [root / rel for rel in _read_file_list(file_list)]
    else:
        files = sorted(
            p
            for p in root.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
        )
    classes = sorted({p.relative_to(root).parts[0] for p in files if len(p.relative_to(root).parts) > 1})
    index = {c: i for i, c in enumerate(classes)}
    images = []
    for p in files:
        rel = p.relative_to(root)
        label = index[rel.parts[0]] if len(rel.parts) > 1 else -1
        images.append(SourceImage(path=p, id=rel.as_posix(), label=label, group=rel.as_posix()))
    return images, classes


def list_sources(cfg: DataConfig, key: str = "datasets.<name>") -> tuple[list[SourceImage], list[str]]:
    """The dataset's images and class names; ``key`` (``datasets.<name>``) names it in errors."""
    if cfg.source == "sample":
        images, classes = sample_images(), []
    else:
        assert cfg.root is not None  # checked when params were validated
        file_list = resolve_path(cfg.file_list) if cfg.file_list else None
        images, classes = folder_images(resolve_path(cfg.root), file_list, key)
    if cfg.max_images is not None:
        images = images[: cfg.max_images]
    return images, classes
