"""`params.yaml` is the single source of settings; this module loads and validates it.

Every section is a frozen dataclass. Loading walks the YAML against the dataclasses and stops at the
first unknown key or bad value, naming the full key path and what is allowed, before any work starts.
Architecture-specific options (``models.<name>.options``) and loss weights belong to the recipes: stage
entry points and commands check them with ``chromapipe.models.registry.validate_models`` right after
loading, so a typo in a model's options fails before any work too. This module stays torch-free (the
prepare and report stages do not pay for importing the models), and the schema helpers live in the leaf
module ``chromapipe.schema``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from chromapipe.layout import EVALUATION_DIR, MODELS_DIR, PREPARED_DIR, REPORTS_DIR, Layout
from chromapipe.schema import ConfigError, build_dataclass  # noqa: F401 - re-exported for callers

#: torch.compile's modes (``train.compile_mode``) and where a training image is decoded (``train.input_decode``):
#: named, so that the benchmarks offer exactly the choices params accept
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
InputDecode = Literal["auto", "loader", "device"]

#: Pillow's decompression-bomb limit: the default largest image (pixels) a dataset or ``chromapipe colorize`` reads
MAX_PIXELS = 178_956_970

#: The gray-input (ab = 0) baseline's name: scored like a model, so params (``evaluate.lab_packed``) and the
#: evaluate/report code must spell it alike. Defined here, the leaf, because ``config`` may not import
#: ``chromapipe.metrics`` (imports run one way); ``chromapipe.metrics.record.GRAY`` re-exports it.
GRAY = "gray"


@dataclass(frozen=True)
class TrackingConfig:
    uri: str | None = None  # None: sqlite:///<project root>/mlflow.db
    experiment: str = "chromapipe"
    artifacts: str | None = None  # new experiments' artifact root; None: mlartifacts/ beside a SQLite store


@dataclass(frozen=True)
class SplitConfig:
    train: float = 0.8
    val: float = 0.1
    test: float = 0.1


@dataclass(frozen=True)
class DataConfig:
    """One named dataset (``datasets.<name>``): where its images come from, how they are prepared, and its
    role — ``train`` (split by photo into train/val/test) or ``eval`` (a fixed evaluation set: every listed
    image is kept). Prepared into ``data/prepared/<name>`` (:class:`chromapipe.layout.Layout`) by the
    ``prepare@<name>`` stage."""

    source: Literal["sample", "folder"] = "sample"
    root: str | None = None  # folder source: ImageFolder tree (class = subfolder)
    file_list: str | None = None  # optional: relative paths (e.g. ImageNet ctest10k.txt) restricting root
    size: int = 256  # stored resolution (square); models resize from it to their own resolution
    resize: Literal["center_crop", "resize"] = "center_crop"
    crops_per_image: int = 1  # >1: a grid of square crops per photo (all stay in the photo's split)
    grayscale_tolerance: float = 2.0  # max channel difference (0-255) for an image to count as gray
    min_colorfulness: float = 0.0  # Hasler-Süsstrunk CF below this: skipped as nearly gray
    max_pixels: int = MAX_PIXELS  # decompression-bomb guard
    splits: SplitConfig = field(default_factory=SplitConfig)
    seed: int = 123456
    shard_size: int = 512  # images per shard file: bounds the writer's memory
    workers: int | Literal["auto"] = (
        "auto"  # local engine: processes; auto = every local core (results stay in source order)
    )
    engine: Literal["local", "ray", "auto"] = "auto"  # auto: ray when RAY_ADDRESS names a cluster, else local
    encoding: Literal["float16", "lab8", "rgb8"] = (
        "float16"  # shard pixels: float16 Lab 6 B/px, 8-bit Lab or sRGB 3 B/px
    )
    role: Literal["train", "eval"] = "train"  # eval: keep every readable image (upscale, keep gray), all in test
    max_images: int | None = None  # cap on source images (quick runs); None: all
    label: str | None = None  # the name the papers give this set ("ImageNet ctest10k"): the report's column
    #: role train: keep grayscale photos instead of skipping them (ChromaGAN trained "including grayscale images")
    keep_grayscale: bool = False
    #: role train: keep photos smaller than ``size`` (upscaled) instead of skipping them (ChromaGAN and the thesis
    #: resized every photo, whatever its size)
    keep_small: bool = False
    #: what counts as gray: ``spread`` = the 99th percentile of the per-pixel channel spread is at most
    #: ``grayscale_tolerance`` (near-gray scans count); ``channel_sums`` = the thesis' rule (Pillow mode L, or the
    #: R channel's sum equals the mean of the three channel sums on the full-resolution image): exact gray only
    gray_rule: Literal["spread", "channel_sums"] = "spread"
    #: role train: a CSV assigning each image its split (columns ``file_name``, a path relative to ``root``, and
    #: ``split``: train/val/test; other columns ignored), the format the thesis' pre-processing saved. It replaces
    #: ``splits`` and ``seed``; the images are stored in its row order; images under ``root`` it does not list are
    #: skipped (``not_in_split_file``), and a listed path that is not in the dataset is an error
    split_file: str | None = None
    #: open choices this dataset's settings make where the papers say nothing (setting name -> why): the report
    #: lists them per table (Protocols); they change nothing in the data
    ours: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainConfig:
    num_workers: int = 1
    use_gpu: bool = False
    resources_per_worker: dict[str, float] = field(default_factory=lambda: {"CPU": 1.0})
    max_failures: int = 1
    storage_path: str = ".ray_runs"  # relative to the project root; shared storage on a multi-node cluster
    checkpoint_every: int = 50  # steps
    log_every: int = 5  # steps
    image_every: int = 50  # steps: grid of sample colorizations logged to MLflow
    validate_every: int = 50  # steps: rank 0 scores a fixed val subset (val/psnr, val/lpips, ...); 0 = never
    validate_images: int = 16  # size of that subset (first images of the val split)
    keep_checkpoints: bool = False  # keep Ray's resume checkpoints after the generator is exported
    amp: bool = False  # bf16 autocast on GPU (no loss scaling needed)
    loader_workers: int = 0
    #: where a training image is decoded from its shard encoding to float L*a*b* (and resized, flipped):
    #: "loader" (the DataLoader's workers), "device" (the whole batch on the training device, after a copy of
    #: the stored bytes: 2-4x fewer bytes through the loader), "auto" (device on a GPU, loader on a CPU)
    input_decode: InputDecode = "auto"
    torch_threads: int = 0  # 0: leave torch's default
    channels_last: bool = False  # NHWC weights and batches (training.performance): same maths, faster convs on GPU
    compile: bool = False  # torch.compile G (and D unless its loss has a gradient penalty); slow first steps
    #: torch.compile's mode with ``compile``: "reduce-overhead" replays each network's kernels as CUDA graphs
    #: (one launch instead of hundreds: for launch-bound small batches), "max-autotune" also tunes GEMMs
    compile_mode: CompileMode = "default"
    cudnn_benchmark: bool = False  # GPU: cuDNN autotunes each convolution once (fixed shapes); not bitwise reproducible
    #: with several workers, BatchNorm statistics over every worker's images (the global batch) instead of each
    #: worker's slice: the model trained is then the one a single worker trains (training/sync_batchnorm.py);
    #: no effect with one worker. false: plain DDP, each worker normalises over batch_size / num_workers images
    sync_batchnorm: bool = True
    #: open choices of the training set-up that bear on every model's numbers (setting -> why): the report lists
    #: them under every table
    ours: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EvaluateConfig:
    split: Literal["train", "val", "test"] = "test"  # the split scored on a train-role dataset (eval sets: all)
    #: the evaluation matrix: model -> the datasets it is scored on. A model not listed is scored on its
    #: training dataset. Lives here, not in the model's settings, so adding a set never retrains a model.
    sets: dict[str, list[str]] = field(default_factory=dict)
    batch_size: int = 8
    max_images: int | None = None
    lpips_net: Literal["alex", "vgg", "squeeze"] = "alex"
    fid: bool = True
    #: also score the thesis' own protocol (metrics/lab_packed.py: lab_psnr, lab_ssim, lab_lpips_vgg, lab_fid on
    #: L*a*b* packed as a 3-channel tensor), beside the sRGB metrics, so the thesis' table can be compared:
    #: true (every model), false, or the models to score so (the gray baseline too, as their reference)
    lab_packed: bool | list[str] = False
    #: the generator's mode under the Lab-packed protocol: "eval" (dropout off, BatchNorm running statistics),
    #: "train" (as the thesis scored: its only test path runs the generator in train mode — dropout on, BatchNorm
    #: over each batch), or "both". Train-mode numbers are stored under their own keys (``lab_*_trainmode``)
    #: and the model is unchanged afterwards (its BatchNorm running statistics are restored). sRGB: eval mode
    generator_mode: Literal["eval", "train", "both"] = "both"
    #: train-mode scoring: images per batch (the thesis' test loader: batches of 8 in file order, no shuffle) and
    #: the seed of its dropout masks (train-mode numbers are random; seeded, they are reproducible)
    train_mode_batch_size: int = 8
    train_mode_seed: int = 0
    samples: int = 6  # images saved for the report's comparison grid


@dataclass(frozen=True)
class ReportConfig:
    samples: int = 4


@dataclass(frozen=True)
class ModelConfig:
    """One trained colorizer. ``arch`` picks the recipe; ``options`` and ``loss`` are the recipe's own."""

    arch: str
    dataset: str | None = None  # the training dataset's name (``datasets.<name>``, role train); required in params
    resolution: int = 256
    batch_size: int = 8  # the global batch (the paper's): each of N Ray workers takes batch_size / N
    steps: int | None = None  # training length in optimiser steps; exactly one of steps/epochs
    epochs: float | None = None
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    schedule: Literal["constant", "cosine"] = "constant"
    lr_min: float = 0.0  # cosine schedule's final learning rate
    n_critic: int = 1  # discriminator steps per generator step
    hflip: bool = True  # random horizontal flip p = 0.5 of training images (the thesis flips; ChromaGAN does not)
    loss: dict[str, float] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    #: open choices this model's settings make where its paper says nothing (setting, e.g. ``batch_size`` or
    #: ``options.teacher``, -> why): the report lists them per table (Protocols)
    ours: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Params:
    seed: int = 0
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    datasets: dict[str, DataConfig] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    models: dict[str, ModelConfig] = field(default_factory=dict)
    #: the project directory: where the params file lives, and under which every stage writes
    #: (:attr:`layout`). Not a setting (``param: False``): it comes from where the file is.
    root: Path | None = field(default=None, compare=False, metadata={"param": False})

    @property
    def layout(self) -> Layout:
        """Where every stage writes and reads its outputs, under :attr:`root` (default: the project root)."""
        return Layout(self.root or project_root())

    def model(self, name: str) -> ModelConfig:
        if name not in self.models:
            raise ConfigError(f"models.{name}: no such model; params.yaml defines {sorted(self.models)}")
        return self.models[name]

    def dataset(self, name: str) -> DataConfig:
        if name not in self.datasets:
            raise ConfigError(f"datasets.{name}: no such dataset; params.yaml defines {sorted(self.datasets)}")
        return self.datasets[name]

    def dataset_dir(self, name: str) -> Path:
        """Where dataset ``name`` is prepared (its manifest and shards); an unknown name is a ConfigError."""
        self.dataset(name)
        return self.layout.prepared(name)

    def training_set(self, model: str) -> str:
        dataset = self.model(model).dataset
        assert dataset is not None  # parse_params requires it
        return dataset

    def evaluation_sets(self, model: str) -> list[str]:
        """The datasets model ``model`` is scored on (the evaluation matrix's row)."""
        return self.evaluate.sets.get(model) or [self.training_set(model)]

    def lab_packed(self, model: str, set_name: str | None = None) -> bool:
        """Whether ``model`` (or the gray baseline) is also scored under the thesis' Lab-packed protocol; with
        ``set_name``, on that set: the gray baseline only where a model it is the reference for is scored so."""
        wanted = self.evaluate.lab_packed
        if model != GRAY:
            return wanted if isinstance(wanted, bool) else model in wanted
        if set_name is None:
            return bool(wanted)
        return any(self.lab_packed(m) and set_name in self.evaluation_sets(m) for m in self.models)

    def generator_modes(self, model: str) -> tuple[str, ...]:
        """The generator modes ``model`` is scored in under the Lab-packed protocol (none when it is not, or for
        the gray baseline, which has no network)."""
        if model == GRAY or not self.lab_packed(model):
            return ()
        mode = self.evaluate.generator_mode
        return ("eval", "train") if mode == "both" else (mode,)

    def evaluated_sets(self) -> list[str]:
        """Every dataset some model is scored on (the gray baseline is scored on each), in params order."""
        wanted = {s for m in self.models for s in self.evaluation_sets(m)}
        return [name for name in self.datasets if name in wanted]


def _check_ranges(p: Params) -> None:
    def positive(value: float | int | None, key: str, allow_zero: bool = False) -> None:
        if value is not None and (value < 0 or (value == 0 and not allow_zero)):
            raise ConfigError(f"{key}: must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")

    if not p.datasets:
        raise ConfigError("datasets: at least one dataset must be defined")
    for name, d in p.datasets.items():
        _check_dataset(f"datasets.{name}", d, positive)
    positive(p.train.num_workers, "train.num_workers")
    for key in ("checkpoint_every", "log_every", "image_every", "validate_images"):
        positive(getattr(p.train, key), f"train.{key}")
    positive(p.train.validate_every, "train.validate_every", allow_zero=True)
    positive(p.evaluate.batch_size, "evaluate.batch_size")
    positive(p.evaluate.train_mode_batch_size, "evaluate.train_mode_batch_size")
    if not p.models:
        raise ConfigError("models: at least one model must be defined")
    for name, m in p.models.items():
        key = f"models.{name}"
        if (m.steps is None) == (m.epochs is None):
            raise ConfigError(f"{key}: set exactly one of steps or epochs")
        positive(m.steps, f"{key}.steps")
        positive(m.epochs, f"{key}.epochs")
        for k in ("resolution", "batch_size", "lr_g", "lr_d", "n_critic"):
            positive(getattr(m, k), f"{key}.{k}")
        if m.batch_size % p.train.num_workers:
            raise ConfigError(
                f"{key}.batch_size: {m.batch_size} is the global batch and must divide evenly over "
                f"train.num_workers = {p.train.num_workers}"
            )
        positive(m.lr_min, f"{key}.lr_min", allow_zero=True)
        train_sets = [n for n, d in p.datasets.items() if d.role == "train"]
        if m.dataset not in train_sets:
            what = "required" if m.dataset is None else f"{m.dataset!r} is not a dataset with role 'train'"
            raise ConfigError(
                f"{key}.dataset: {what}; expected one of {', '.join(map(repr, train_sets)) or '(none defined)'}"
            )
        size = p.datasets[m.dataset].size
        if m.resolution > size:
            raise ConfigError(f"{key}.resolution: {m.resolution} exceeds datasets.{m.dataset}.size {size}")
        for set_name in p.evaluation_sets(name):
            if set_name not in p.datasets:
                raise ConfigError(
                    f"evaluate.sets.{name}: {set_name!r} is not a dataset; expected one of "
                    f"{', '.join(map(repr, p.datasets))}"
                )
    for name in [] if isinstance(p.evaluate.lab_packed, bool) else p.evaluate.lab_packed:
        if name not in p.models:
            raise ConfigError(
                f"evaluate.lab_packed: {name!r} is not a model; expected true, false or a list of "
                f"{', '.join(map(repr, p.models))}"
            )
    for name in p.evaluate.sets:
        if name not in p.models:
            raise ConfigError(f"evaluate.sets.{name}: no such model; expected one of {', '.join(map(repr, p.models))}")
    for name, m in p.models.items():
        _check_ours(f"models.{name}.ours", m.ours, ModelConfig)
    _check_ours("train.ours", p.train.ours, TrainConfig)


def _check_ours(key: str, ours: dict[str, str], cls: type) -> None:
    """An open-choice note names the setting it is about: its first dotted part must be a field of ``cls``."""
    fields = [f.name for f in dataclasses.fields(cls) if f.name != "ours"]
    for setting, why in ours.items():
        if setting.split(".")[0] not in fields:
            raise ConfigError(f"{key}.{setting}: not a setting of this section; expected one of {', '.join(fields)}")
        if not why.strip():
            raise ConfigError(f"{key}.{setting}: say why the choice is ours (an empty note says nothing)")


def _check_dataset(key: str, d: DataConfig, positive) -> None:
    s = d.splits
    if abs(s.train + s.val + s.test - 1.0) > 1e-6 or min(s.train, s.val, s.test) < 0:
        raise ConfigError(f"{key}.splits: ratios must be >= 0 and sum to 1, got {s}")
    if d.source == "folder" and not d.root:
        raise ConfigError(f"{key}.root: required when source is 'folder'")
    for field_name in ("size", "crops_per_image", "shard_size", "max_pixels"):
        positive(getattr(d, field_name), f"{key}.{field_name}")
    positive(d.max_images, f"{key}.max_images")
    if d.workers != "auto":
        positive(d.workers, f"{key}.workers")
    if d.role == "eval" and d.crops_per_image != 1:
        raise ConfigError(
            f"{key}.crops_per_image: must be 1 when role is 'eval' (one view per evaluated image), "
            f"got {d.crops_per_image}"
        )
    if d.role == "eval":
        for option in ("keep_grayscale", "keep_small", "split_file"):
            if getattr(d, option):
                raise ConfigError(
                    f"{key}.{option}: only for role 'train' (role 'eval' keeps every listed image, all in test)"
                )
    if d.split_file and d.source != "folder":
        raise ConfigError(f"{key}.split_file: needs source 'folder' (its paths are relative to root)")
    _check_ours(f"{key}.ours", d.ours, DataConfig)


#: settings that used to name output paths: an explanation instead of "unknown key"
_OUTPUT_PATHS = {"train": MODELS_DIR, "evaluate": EVALUATION_DIR, "report": REPORTS_DIR}


def _reject_output_paths(raw: dict[str, Any]) -> None:
    where = [(f"{name}.out", path) for name, path in _OUTPUT_PATHS.items() if "out" in (raw.get(name) or {})]
    datasets = raw.get("datasets") or {}
    if isinstance(datasets, dict):
        where += [(f"datasets.{n}.out", f"{PREPARED_DIR}/{n}") for n, d in datasets.items() if "out" in (d or {})]
    if where:
        key, path = where[0]
        raise ConfigError(
            f"{key}: output paths are not settings: the stage writes {path}/ under the project directory (where "
            "params.yaml is), as dvc.yaml declares; remove the key (to write elsewhere, put the params file there)"
        )


def parse_params(raw: dict[str, Any], root: Path | None = None) -> Params:
    """Validate a params mapping (as read from YAML) into :class:`Params`; ``root``: the project directory."""
    if not isinstance(raw, dict):
        raise ConfigError("params: the file must hold a mapping at the top level")
    raw = dict(raw)
    models_raw = raw.pop("models", None) or {}
    if not isinstance(models_raw, dict):
        raise ConfigError("models: expected a mapping of model name to settings")
    if "data" in raw:
        raise ConfigError(
            "data: the data section is now `datasets: {<name>: {...}}` (one entry per dataset, "
            "each with a role), and every model names its training dataset (`models.<m>.dataset`)"
        )
    _reject_output_paths(raw)
    params = build_dataclass(Params, raw, "")
    models = {name: build_dataclass(ModelConfig, spec, f"models.{name}") for name, spec in models_raw.items()}
    params = dataclasses.replace(params, models=models, root=root)
    _check_ranges(params)
    return params


def project_root() -> Path:
    """The project directory, where params.yaml is and outputs go: the directory DVC runs stages in, i.e.
    the repository root, or its copy under ``.dvc/tmp/exps`` in ``dvc exp run --temp`` / ``--queue``."""
    return Path.cwd().resolve()


def workspace_root() -> Path:
    """The user's workspace, where the default MLflow store lives. In experiment copies DVC points
    ``DVC_ROOT`` at the parent repository, so queued experiments log to the store ``make ui`` shows
    instead of one deleted with the copy."""
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def load_params(path: str | os.PathLike[str] | None = None) -> Params:
    """Load and validate params.yaml (default: the project root's). The file's directory is the project's
    root (:attr:`Params.root`): every stage output goes under it."""
    path = Path(path) if path else project_root() / "params.yaml"
    if not path.exists():
        raise ConfigError(f"{path}: params file not found")
    with open(path, encoding="utf-8") as fh:
        try:
            raw = yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse_params(raw or {}, root=path.resolve().parent)


def to_dict(obj: Any) -> Any:
    """A JSON-ready view of a config dataclass (for MLflow params, manifests and hashes)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def config_hash(*parts: Any) -> str:
    """A short stable hash of config values: names a training run, so changed params start fresh."""
    blob = json.dumps([to_dict(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def resolve_path(path: str) -> Path:
    """A params path, relative to the project root unless absolute."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else project_root() / p


def tracking_uri(p: Params, root: Path | None = None) -> str:
    """``tracking.uri``, else the SQLite store ``mlflow.db`` in ``root`` (default: the workspace root)."""
    return p.tracking.uri or f"sqlite:///{(root or workspace_root()).resolve() / 'mlflow.db'}"


def artifact_location(p: Params) -> str | None:
    """Where a new experiment keeps artifacts. MLflow's default is ``./mlruns`` under whatever directory
    the process happens to run in; beside the SQLite file keeps store and artifacts together. ``None``
    lets a tracking server decide."""
    if p.tracking.artifacts:
        return str(resolve_path(p.tracking.artifacts))
    uri = tracking_uri(p)
    if uri.startswith("sqlite:///"):
        return str(Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts")
    return None
