"""params.yaml validation: the shipped profiles load; each kind of mistake stops with the key named."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from chromapipe.config import ConfigError, config_hash, load_params, parse_params
from chromapipe.models.registry import validate_models

REPO = Path(__file__).resolve().parents[1]
TINY = {"arch": "tests.tiny_recipe:TinyRecipe", "dataset": "sample", "resolution": 32, "batch_size": 2, "steps": 4}


@pytest.mark.parametrize("name", ["params.yaml", "params-paper.yaml", "params-real.yaml"])
def test_shipped_profiles_validate(name: str) -> None:
    params = validate_models(load_params(REPO / name))
    assert {"pix2pix", "chromagan", "palgan"} <= set(params.models), name
    assert {m.arch for m in params.models.values()} == {"pix2pix", "chromagan", "palgan"}


def _base() -> dict:
    return {"datasets": {"sample": {"size": 64}}, "models": {"tiny": dict(TINY)}}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p.update(bogus=1), "bogus: unknown key"),
        (lambda p: p["datasets"]["sample"].update(sise=3), "datasets.sample.sise: unknown key"),
        (
            lambda p: p["datasets"]["sample"].update(source="imagenet"),
            "datasets.sample.source: 'imagenet' is not allowed; expected one of 'sample', 'folder'",
        ),
        (lambda p: p["datasets"]["sample"].update(size="big"), "datasets.sample.size: expected an integer"),
        (lambda p: p["datasets"]["sample"].update(size=-1), "datasets.sample.size: must be > 0"),
        (
            lambda p: p["datasets"]["sample"].update(splits={"train": 0.5, "val": 0.1, "test": 0.1}),
            "datasets.sample.splits: ratios must be >= 0 and sum to 1",
        ),
        (lambda p: p["datasets"]["sample"].update(source="folder"), "datasets.sample.root: required"),
        (
            lambda p: p["datasets"]["sample"].update(role="eval", crops_per_image=4),
            "datasets.sample.crops_per_image: must be 1 when role is 'eval'",
        ),
        (lambda p: p.update(data={"size": 64}), "data: the data section is now `datasets:"),
        (lambda p: p["models"]["tiny"].pop("dataset"), "models.tiny.dataset: required; expected one of 'sample'"),
        (
            lambda p: p["models"]["tiny"].update(dataset="imagenet"),
            "models.tiny.dataset: 'imagenet' is not a dataset with role 'train'",
        ),
        (
            lambda p: p["datasets"]["sample"].update(role="eval", crops_per_image=1),
            "models.tiny.dataset: 'sample' is not a dataset with role 'train'",
        ),
        (lambda p: p.update(evaluate={"sets": {"tiny": ["coco"]}}), "evaluate.sets.tiny: 'coco' is not a dataset"),
        (lambda p: p.update(evaluate={"sets": {"nobody": ["sample"]}}), "evaluate.sets.nobody: no such model"),
        (
            lambda p: p.update(evaluate={"lab_packed": ["tiny", "pix2pix"]}),
            "evaluate.lab_packed: 'pix2pix' is not a model",
        ),
        (lambda p: p.update(evaluate={"lab_packed": "yes"}), "evaluate.lab_packed: 'yes' is not allowed"),
        (
            lambda p: (p.update(train={"num_workers": 2}), p["models"]["tiny"].update(batch_size=3)),
            "models.tiny.batch_size: 3 is the global batch and must divide evenly over train.num_workers = 2",
        ),
        (lambda p: p["models"]["tiny"].update(arch="gan9000"), "models.tiny.arch: 'gan9000' is not allowed"),
        (lambda p: p["models"]["tiny"].update(steps=None), "models.tiny: set exactly one of steps or epochs"),
        (lambda p: p["models"]["tiny"].update(epochs=3), "models.tiny: set exactly one of steps or epochs"),
        (lambda p: p["models"]["tiny"].update(lr_g=0), "models.tiny.lr_g: must be > 0"),
        (
            lambda p: p["models"]["tiny"].update(resolution=128),
            "models.tiny.resolution: 128 exceeds datasets.sample.size 64",
        ),
        (lambda p: p["models"]["tiny"].update(schedule="linear"), "models.tiny.schedule: 'linear' is not allowed"),
        (lambda p: p["models"]["tiny"].update(betas=[0.5]), "models.tiny.betas: expected a list of 2 values"),
        (lambda p: p["models"]["tiny"].update(options={"width": 3}), "models.tiny.options.width: unknown key"),
        (
            lambda p: p["models"]["tiny"].update(loss={"perceptual": 1.0}),
            "models.tiny.loss.perceptual: unknown loss term",
        ),
        (lambda p: p["models"]["tiny"].update(loss={"l1": -1.0}), "models.tiny.loss.l1: loss weights must be >= 0"),
        (lambda p: p["models"]["tiny"].pop("arch"), "models.tiny.arch: required key is missing"),
        (lambda p: p.update(train={"num_workers": 0}), "train.num_workers: must be > 0"),
        (lambda p: p.update(train={"input_decode": "gpu"}), "train.input_decode: 'gpu' is not allowed"),
        (lambda p: p.update(train={"compile_mode": "fast"}), "train.compile_mode: 'fast' is not allowed"),
        (lambda p: p.update(train={"out": "elsewhere"}), "train.out: output paths are not settings: the stage writes"),
        (lambda p: p["datasets"]["sample"].update(out="x"), "datasets.sample.out: output paths are not settings"),
        (lambda p: p.update(root="/tmp"), "root: unknown key"),
    ],
)
def test_bad_params_name_the_key(mutate, message: str) -> None:
    raw = _base()
    mutate(raw)
    with pytest.raises(ConfigError) as err:
        validate_models(parse_params(raw))
    assert message in str(err.value)


def test_outputs_go_under_the_params_files_directory(tmp_path: Path) -> None:
    """One owner for output paths: the project root is where the params file is; every stage output is fixed
    below it (chromapipe.layout), not a setting."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(_base()))
    layout = load_params(tmp_path / "params.yaml").layout
    assert layout.root == tmp_path.resolve()
    assert layout.prepared("sample") == tmp_path.resolve() / "data" / "prepared" / "sample"
    assert layout.generator("tiny") == tmp_path.resolve() / "models" / "tiny" / "generator.pt"
    assert layout.summary("tiny") == tmp_path.resolve() / "evaluation" / "summary" / "tiny.json"


def test_lab_packed_names_the_models_scored_under_the_thesis_protocol() -> None:
    raw = _base()
    raw["models"]["other"] = dict(TINY)
    for setting, expected in (
        (True, (True, True, True)),
        (False, (False, False, False)),
        (["tiny"], (True, False, True)),
        ([], (False, False, False)),
    ):
        raw["evaluate"] = {"lab_packed": setting}
        p = parse_params(raw)
        assert (p.lab_packed("tiny"), p.lab_packed("other"), p.lab_packed("gray")) == expected, setting


def test_gray_baseline_name_has_one_definition() -> None:
    """The leaf config holds the baseline's name; metrics.record re-exports the same object for its callers."""
    from chromapipe import config
    from chromapipe.metrics import record

    assert config.GRAY == "gray" and record.GRAY is config.GRAY


def test_params_load_without_torch() -> None:
    """Loading params (prepare, report) does not import torch or the models: no config <-> models circle."""
    code = (
        "import sys; from chromapipe.config import load_params; load_params(sys.argv[1]); "
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('chromapipe.models')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code, str(REPO / "params.yaml")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_config_hash_changes_with_any_value() -> None:
    a = parse_params(_base())
    raw = _base()
    raw["models"]["tiny"]["lr_g"] = 1e-3
    b = parse_params(raw)
    assert config_hash(a.models["tiny"]) != config_hash(b.models["tiny"])
    assert config_hash(a.models["tiny"]) == config_hash(copy.deepcopy(a).models["tiny"])


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)
    bad.write_text(yaml.safe_dump({"models": {"tiny": TINY}, "datasets": {"sample": {"size": 64}}}))
    assert load_params(bad).models["tiny"].steps == 4


def test_paper_profile_is_the_papers() -> None:
    """Each model on its paper's data and evaluation sets, with the papers' global batches; the thesis's
    classification generator has exactly the thesis's 97,096,015 parameters (205 Places205 classes)."""
    import torch

    from chromapipe.models.base import count_parameters
    from chromapipe.models.registry import build_recipe

    p = validate_models(load_params(REPO / "params-paper.yaml"))
    thesis = ("pix2pix", "pix2pix_class", "pix2pix_wgan_class")
    assert {p.training_set(m) for m in thesis} == {"places205_10pct"}
    places = p.dataset("places205_10pct")
    assert (places.resize, places.size, places.seed, places.label) == ("resize", 256, 123456, "Places205 test")
    assert (places.splits.train, places.splits.val, places.splits.test) == (0.85, 0.05, 0.10)
    assert {p.model(m).batch_size for m in thesis} == {8} and p.model("chromagan").batch_size == 10
    assert p.evaluation_sets("chromagan") == ["ilsvrc2012_val1k"]
    val1k = p.dataset("ilsvrc2012_val1k")
    assert (val1k.role, val1k.size, val1k.resize) == ("eval", 224, "resize")
    assert [p.dataset(s).label for s in p.evaluation_sets("palgan")] == [
        "ImageNet ctest10k",
        "ImageNet val50k",
        "COCO-Stuff",
    ]
    assert {s for m in ("palgan_no_ca", "palgan_global_ca", "palgan_local_ca") for s in p.evaluation_sets(m)} == {
        "cocostuff_val"
    }
    with torch.device("meta"):
        generator = build_recipe(p.model("pix2pix_class")).build_generator()
    assert count_parameters(generator) == 97_096_015
