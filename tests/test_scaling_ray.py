"""Same science at every scale, through real Ray Train (gloo workers) and a real MLflow store.

- World-size invariance: 1 worker × global batch 4 against 2 workers × 2, three steps; generator and
  discriminator parameters and the per-step losses agree within float rounding (tolerances below). The
  control: with ``train.sync_batchnorm: false`` the BatchNorm models differ by far more.
- Exact resume: 12 steps straight against the same run whose worker group is killed after its step-6
  checkpoint and resumed by Ray, through the train stage's own path: the same generator, bitwise, and each
  step once in the MLflow history.

The one-worker reference runs the training core in this process (``training.trainer``, composed as the Ray
worker composes it); the two-worker runs are the Ray worker's own ``train_one``.
"""

from __future__ import annotations

import copy
import functools
import shutil
from pathlib import Path

import pytest
import ray.train
import torch
import yaml
from mlflow.tracking import MlflowClient

from chromapipe.config import Params, load_params
from chromapipe.data.prepare import prepare
from chromapipe.layout import LOSS_METRICS, TRAIN_METRIC
from chromapipe.models.base import unwrap
from chromapipe.models.checkpoint import load_generator
from chromapipe.models.randomness import batch_split
from chromapipe.models.registry import build_recipe
from chromapipe.training import run
from chromapipe.training.batches import build_loader, device_batches, training_dataset
from chromapipe.training.schedule import total_steps
from chromapipe.training.trainer import Hook, LogEvent, Networks, build_networks, fit, seed_everything
from chromapipe.training.worker import WorkerConfig, train_one
from tests.conftest import REPO, quick_params

SHIPPED = yaml.safe_load((REPO / "params.yaml").read_text())["models"]
STEPS, GLOBAL_BATCH = 3, 4
PHOTOS = {"size": 256, "crops_per_image": 2}
#: Tolerances, from measurements (README "Scaling"). Parameters: the L2 norm of the difference between the
#: 1- and 2-worker parameters over the L2 norm of what training changed them by. Float rounding alone moves it:
#: Adam divides each gradient by its own magnitude, so an element whose gradient is near zero (a bias before
#: BatchNorm, a weight of the 1×1 bottleneck) takes a full-size step in a direction rounding decides. Measured
#: for pix2pix ① after 3 steps: 1 vs 2 workers 1.2 %, one worker with 1 vs 2 threads (same maths, other
#: summation order) 1.1 %; without synchronised BatchNorm 18 %; PalGAN (no BatchNorm; attention and instance
#: norms amplify rounding more) 2.3 %, against 1.4 % for 1 vs 2 threads. Losses (each step's, of the global
#: batch; relative above 1, absolute below): ≤ 2e-4 with synchronisation (PalGAN's adversarial term, around
#: -0.01, 4e-5), 4 % without.
PARAM_TOLERANCE, LOSS_TOLERANCE = 0.05, 1e-3


@pytest.fixture(scope="module")
def photos(tmp_path_factory, local_ray) -> Path:
    """The sample photos at 256² (two crops each), prepared once for every run of this module."""
    root = tmp_path_factory.mktemp("scaling")
    params = load_params(quick_params(root, data=PHOTOS))
    prepare(params.dataset("sample"), params.dataset_dir("sample"))
    return root


def _params(tmp: Path, photos: Path, name: str, workers: int, sync: bool) -> Params:
    model = {**SHIPPED[name], "steps": STEPS, "batch_size": GLOBAL_BATCH}
    train = {
        "num_workers": workers,
        "resources_per_worker": {"CPU": 1.0},
        "sync_batchnorm": sync,
        "log_every": 1,
        "checkpoint_every": 100,
        "image_every": 100,
        "validate_every": 0,
    }
    tmp.mkdir(parents=True, exist_ok=True)
    return load_params(quick_params(tmp, models={name: model}, data=PHOTOS, prepared_in=photos, train=train))


class _Losses(Hook):
    def __init__(self) -> None:
        self.rows: dict[int, dict[str, float]] = {}

    def on_log(self, event: LogEvent, nets: Networks) -> None:
        self.rows[event.step] = dict(event.values)


def _one_worker(params: Params, name: str) -> tuple[dict, dict[int, dict[str, float]]]:
    """The model trained by one worker, in this process: as ``worker.train_one`` composes the core."""
    cfg, tc, device = params.model(name), params.train, torch.device("cpu")
    seed_everything(params.seed)
    recipe = build_recipe(cfg)
    recipe.setup(device)
    dataset = training_dataset(params.dataset_dir(cfg.dataset), cfg, tc, device)
    nets = build_networks(recipe, cfg, tc, total_steps(cfg, len(dataset)), device)
    loader = build_loader(dataset, cfg, tc, seed=params.seed, device=device)
    init = {"G": copy.deepcopy(nets.G.state_dict()), "D": copy.deepcopy(nets.D.state_dict())}
    losses = _Losses()
    with batch_split(0, 1):
        fit(recipe, nets, device_batches(loader, dataset, recipe, device, False), steps=STEPS,
            images_per_step=cfg.batch_size, n_critic=cfg.n_critic, log_every=1, hooks=[losses])  # fmt: skip
    return {"G": nets.G.state_dict(), "D": nets.D.state_dict(), "init": init}, losses.rows


def _train_and_keep(out_dir: Path, configs: list[WorkerConfig]) -> None:
    """A Ray Train loop: the worker's own ``train_one`` per model; rank 0 keeps the final G and D."""
    for wc in configs:
        nets = train_one(wc, None)
        if ray.train.get_context().get_world_rank() == 0:
            torch.save(
                {"G": unwrap(nets.G).state_dict(), "D": unwrap(nets.D).state_dict()}, out_dir / f"{wc.run_id}.pt"
            )


def _two_workers(tmp: Path, photos: Path, names: list[str], syncs: tuple[bool, ...]) -> dict:
    """Every (model, sync) in one Ray Train run of two workers: {(name, sync): (state, per-step losses)}."""
    variants = {(n, s): _params(tmp / f"{n}-sync-{s}", photos, n, 2, s) for n in names for s in syncs}
    runs = {key: run.start(p, key[0]) for key, p in variants.items()}
    workers = [run.worker_config(variants[key], r) for key, r in runs.items()]
    run.fit_workers(
        next(iter(variants.values())), workers, f"invariance-{tmp.name}", functools.partial(_train_and_keep, tmp)
    )
    out = {}
    for key, r in runs.items():
        client = MlflowClient(r.tracking_uri)
        keys = [k for k in client.get_run(r.run_id).data.metrics if k.startswith(TRAIN_METRIC) and "_per_s" not in k]
        rows: dict[int, dict[str, float]] = {}
        for k in keys:
            if k == f"{TRAIN_METRIC}lr_g":
                continue
            for m in client.get_metric_history(r.run_id, k):
                rows.setdefault(m.step, {})[k.removeprefix(TRAIN_METRIC)] = m.value
        out[key] = torch.load(tmp / f"{r.run_id}.pt", weights_only=True), rows
    return out


def _relative(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], init: dict[str, torch.Tensor]) -> float:
    """||a - b|| / ||a - init|| over every floating-point tensor (weights and BatchNorm statistics): how far
    apart the two runs ended, relative to how far training moved them."""
    keys = [k for k, v in a.items() if v.is_floating_point()]
    norm = lambda d: sum(float(v.double().pow(2).sum()) for v in d) ** 0.5  # noqa: E731
    return norm(a[k] - b[k] for k in keys) / max(norm(a[k] - init[k] for k in keys), 1e-12)


def _gap(reference: dict, net: str, other: dict) -> float:
    return _relative(reference[net], other[net], reference["init"][net])


def _loss_gap(a: dict[int, dict[str, float]], b: dict[int, dict[str, float]]) -> float:
    """The largest difference of any loss term at any step, relative to the term where it is above 1 and
    absolute below (adversarial terms hover around 0, where a relative difference says nothing)."""
    assert sorted(a) == sorted(b) == list(range(1, STEPS + 1))
    return max(abs(a[s][k] - b[s][k]) / max(abs(a[s][k]), 1.0) for s in a for k in a[s])


def _assert_invariant(tmp: Path, photos: Path, names: list[str], with_control: list[str]) -> dict:
    syncs = (True, False) if with_control else (True,)
    two = _two_workers(tmp, photos, names, syncs)
    report = {}
    for name in names:
        one_state, one_losses = _one_worker(_params(tmp / f"{name}-one", photos, name, 1, True), name)
        state, losses = two[(name, True)]
        gap = functools.partial(_gap, one_state)
        gaps = {"G": gap("G", state), "D": gap("D", state), "losses": _loss_gap(one_losses, losses)}
        report[name] = gaps
        assert gaps["G"] < PARAM_TOLERANCE and gaps["D"] < PARAM_TOLERANCE, (name, gaps)
        assert gaps["losses"] < LOSS_TOLERANCE, (name, gaps)
        if name in with_control:  # plain DDP: each worker normalises over its own 2 images
            plain_state, plain_losses = two[(name, False)]
            control = {
                "G": gap("G", plain_state),
                "D": gap("D", plain_state),
                "losses": _loss_gap(one_losses, plain_losses),
            }
            report[f"{name} (no sync)"] = control
            assert control["G"] > 2 * PARAM_TOLERANCE and control["losses"] > 10 * LOSS_TOLERANCE, (name, control)
    print("world-size invariance, relative differences 1 vs 2 workers:", report)
    return report


def test_two_workers_train_the_model_one_worker_trains(tmp_path: Path, photos: Path) -> None:
    """pix2pix ①: BatchNorm in G and D, dropout in G, random flips."""
    _assert_invariant(tmp_path, photos, ["pix2pix"], with_control=["pix2pix"])


@pytest.mark.slow  # ChromaGAN's 171 M parameters and PalGAN at 256², in one Ray Train run (about 5 min on 2 cores)
def test_two_workers_train_what_one_trains_for_chromagan_and_palgan(tmp_path: Path, photos: Path) -> None:
    """ChromaGAN (BatchNorm, the WGAN-GP interpolation weights) and PalGAN (no BatchNorm: instance norm and
    spectral norm; the palette-mask draws): invariant; the control for ChromaGAN's BatchNorm."""
    _assert_invariant(tmp_path, photos, ["chromagan", "palgan"], with_control=["chromagan"])


@pytest.mark.slow  # three Ray Train runs, one of them killed and restarted (about 3 min on 2 cores)
def test_a_resumed_run_is_the_run_it_replaces(tmp_path: Path, photos: Path) -> None:
    """12 steps straight against 6 + a killed worker group + resume, through the train stage's own path; a
    model finished before the crash is not trained again. BatchNorm, dropout, flips, cosine schedule."""
    base = {"arch": "tests.tiny_recipe:FlakyRecipe", "resolution": 32, "batch_size": 4, "steps": 12,
            "schedule": "cosine", "lr_min": 1e-5}  # fmt: skip
    train = {"checkpoint_every": 6, "log_every": 2, "image_every": 3, "resources_per_worker": {"CPU": 1.0}}
    data = {"size": 64, "crops_per_image": 4}
    never = tmp_path / "never-crash"
    never.write_text("a run whose marker exists never crashes")
    straight = load_params(quick_params(tmp_path / "straight", models={"flaky": {**base, "options": {
        "crash_marker": str(never)}}}, data=data, train=train))  # fmt: skip
    prepare(straight.dataset("sample"), straight.dataset_dir("sample"))
    marker = tmp_path / "crashed"
    crashing = load_params(quick_params(tmp_path / "crashing", models={
        "steady": {**base, "arch": "tests.tiny_recipe:TinyNormRecipe", "steps": 4},
        "flaky": {**base, "options": {"crash_marker": str(marker), "crash_after": 10}}},
        data=data, train=train, prepared_in=tmp_path / "straight"))  # fmt: skip

    reference = run.train_model(straight, "flaky")
    steady, flaky = run.train_models(crashing, ["steady", "flaky"])
    assert marker.exists(), "the worker never crashed: the test did not exercise recovery"
    assert flaky["steps"] == reference["steps"] == 12 and steady["ray"]["ray_run"] == flaky["ray"]["ray_run"]
    _, g_straight, _ = load_generator(straight.layout.generator("flaky"))
    _, g_resumed, _ = load_generator(crashing.layout.generator("flaky"))
    for key, value in g_straight.state_dict().items():
        assert torch.equal(g_resumed.state_dict()[key], value), key  # bitwise: CPU, deterministic kernels
    client = MlflowClient(crashing.tracking.uri)
    for key in LOSS_METRICS:  # logged 2, 4, 6, 8 before the crash at step 10; resumed at 6: 8 not again
        assert [m.step for m in client.get_metric_history(flaky["run_id"], key)] == [2, 4, 6, 8, 10, 12], key
    straight_history = MlflowClient(straight.tracking.uri).get_metric_history(reference["run_id"], LOSS_METRICS[1])
    resumed_history = client.get_metric_history(flaky["run_id"], LOSS_METRICS[1])
    assert [m.value for m in sorted(resumed_history, key=lambda m: m.step)] == [
        m.value for m in sorted(straight_history, key=lambda m: m.step)
    ]
    previews = [a.path for a in client.list_artifacts(flaky["run_id"], "images") if a.path.endswith(".png")]
    assert len(previews) == 4  # steps 3, 6, 9 (before the crash) and 12: the resumed run did not log 9 again
    # the model that finished before the crash was not trained again
    assert [m.step for m in client.get_metric_history(steady["run_id"], LOSS_METRICS[0])] == [2, 4]
    shutil.rmtree(tmp_path / "crashing" / "ray", ignore_errors=True)
