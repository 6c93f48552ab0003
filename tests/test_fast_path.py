"""The training fast path: no host sync per step, the non-finite guard, shared optimisers, channels_last and
torch.compile computing what the plain path computes.

Tolerances, and why they are what they are (each a margin over what the 2-core CPU gave with torch 2.14:
reports/benchmarks.md, "Test suite: slow tests' durations and the numerical agreement behind the
tolerances"):
- tiny recipe, float32, the project's Adam, 3 steps: plain vs channels_last losses and parameters, asserted
  at 1e-5 relative / 1e-6 absolute.
- PalGAN at 64², float32, 2 steps: losses asserted to 1e-3 relative. Its final parameters are compared after
  SGD, not Adam: Adam divides every gradient by its own running magnitude, so a parameter whose true gradient
  is zero (a bias right before a normalisation: pure rounding noise) moves by +-lr on the *sign* of that noise
  in each path, which says nothing about the layout. Under SGD a parameter difference is a gradient
  difference, relative to the update's norm over all parameters (the second step inherits the first step's
  rounding through batch-2 normalisation statistics), asserted 3e-2.
"""

from __future__ import annotations

import dataclasses
import math
import re
import shutil
from pathlib import Path

import pytest
import torch

from chromapipe.config import ModelConfig, load_params
from chromapipe.models.registry import build_recipe
from chromapipe.training.performance import (
    CompileWatch,
    apply_performance_options,
    apply_to_pair,
    batch_to_channels_last,
    compile_problems,
    compile_stats,
    discriminator_compilable,
)
from chromapipe.training.step import NonFiniteGuard, build_optimizers, logs_to_floats, train_step

TINY = "tests.tiny_recipe:TinyRecipe"


def _batches(n: int, size: int, batch_size: int = 2) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return [
        {
            "L": torch.rand(batch_size, 1, size, size, generator=gen) * 100,
            "ab": torch.randn(batch_size, 2, size, size, generator=gen) * 25,
            "label": torch.zeros(batch_size, dtype=torch.long),
        }
        for _ in range(n)
    ]


def _train(
    cfg: ModelConfig,
    batches,
    *,
    channels_last: bool = False,
    compile: bool = False,
    sgd_lr: float | None = None,
    amp: bool = False,
):
    """Fixed seed, the given batches, one ``train_step`` each (G every step). -> (per-step float logs, final state)."""
    recipe = build_recipe(cfg)
    torch.manual_seed(0)
    G, D = apply_to_pair(
        recipe, recipe.build_generator(), recipe.build_discriminator(), channels_last=channels_last, compile=compile
    )
    if sgd_lr is None:
        opt_g, opt_d = build_optimizers(G, D, cfg)
    else:
        opt_g, opt_d = torch.optim.SGD(G.parameters(), lr=sgd_lr), torch.optim.SGD(D.parameters(), lr=sgd_lr)
    history = []
    for raw in batches:
        batch = recipe.prepare_batch(dict(raw))
        if channels_last:
            batch = batch_to_channels_last(batch)
        history.append(logs_to_floats(train_step(recipe, G, D, opt_g, opt_d, batch, g_step=True, amp=amp)))
    state = {f"G.{k}": v.detach().clone() for k, v in G.state_dict().items()} | {
        f"D.{k}": v.detach().clone() for k, v in D.state_dict().items()
    }
    return history, state


def _assert_logs_close(a: list[dict[str, float]], b: list[dict[str, float]], rtol: float) -> None:
    assert [set(x) for x in a] == [set(x) for x in b]
    for step, (x, y) in enumerate(zip(a, b)):
        for key in x:
            assert math.isclose(x[key], y[key], rel_tol=rtol, abs_tol=1e-7), (step, key, x[key], y[key])


# -- train_step's logs and the guard ---------------------------------------------------------------------------
def test_train_step_returns_detached_scalar_tensors_usable_as_floats() -> None:
    cfg = ModelConfig(arch=TINY, resolution=32, batch_size=2, steps=1)
    recipe = build_recipe(cfg)
    G, D = recipe.build_generator(), recipe.build_discriminator()
    opt_g, opt_d = build_optimizers(G, D, cfg)
    logs = train_step(recipe, G, D, opt_g, opt_d, _batches(1, 32)[0], g_step=True, amp=False)
    assert {"d_loss", "d_total", "g_adv", "g_l1", "g_total"} == set(logs)
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad for v in logs.values())
    # what the current loop does with them keeps working (one sync each)
    assert math.isfinite(logs["d_total"]) and isinstance(float(logs["g_total"]), float)
    assert "%.4f" % logs["g_total"] == f"{float(logs['g_total']):.4f}"  # noqa: UP031 (the loop logs with %-format)
    floats = logs_to_floats(logs)
    assert list(floats) == list(logs) and all(type(v) is float for v in floats.values())
    assert floats["d_total"] == pytest.approx(float(logs["d_total"]))
    d_only = train_step(recipe, G, D, opt_g, opt_d, _batches(1, 32)[0], g_step=False, amp=False)
    assert "g_total" not in d_only and "d_total" in d_only


def test_generator_update_leaves_discriminator_gradients_alone() -> None:
    """D is frozen in the G update: D's gradients after a generator iteration are those of its own update,
    as after a critic-only iteration from the same state, and D's parameters require gradients again."""
    cfg = ModelConfig(arch=TINY, resolution=32, batch_size=2, steps=1)
    recipe = build_recipe(cfg)
    batch = _batches(1, 32)[0]
    grads = {}
    for g_step in (False, True):
        torch.manual_seed(0)
        G, D = recipe.build_generator(), recipe.build_discriminator()
        train_step(recipe, G, D, *build_optimizers(G, D, cfg), batch, g_step=g_step, amp=False)
        grads[g_step] = [p.grad.clone() for p in D.parameters()]
        assert all(p.requires_grad for p in D.parameters())
    for a, b in zip(grads[False], grads[True]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_logs_to_floats_accepts_plain_floats() -> None:
    assert logs_to_floats({"a": 1.5, "b": torch.tensor(2.0)}) == {"a": 1.5, "b": 2.0}


class _NaNRecipeMixin:
    """Makes the generator's or the discriminator's loss NaN on demand. The NaN is an added constant, so the
    gradients (and the parameters) stay finite and only the poisoned step's loss is non-finite."""

    poison: str | None = None

    def discriminator_loss(self, D, batch, fake):
        loss, logs = super().discriminator_loss(D, batch, fake)
        return (loss + torch.tensor(float("nan")), logs) if self.poison == "d" else (loss, logs)

    def generator_loss(self, D, batch, out):
        loss, logs = super().generator_loss(D, batch, out)
        return (loss + torch.tensor(float("nan")), logs) if self.poison == "g" else (loss, logs)


@pytest.mark.parametrize("poison,message", [("g", "generator loss (g_total)"), ("d", "discriminator loss (d_total)")])
def test_guard_stops_on_non_finite_loss_with_its_step_window(poison: str, message: str) -> None:
    from tests.tiny_recipe import TinyRecipe

    class NaNRecipe(_NaNRecipeMixin, TinyRecipe):
        pass

    recipe = NaNRecipe(options=None, loss={}, resolution=32)
    G, D = recipe.build_generator(), recipe.build_discriminator()
    opt_g, opt_d = build_optimizers(G, D, ModelConfig(arch=TINY, resolution=32, steps=1))
    guard = NonFiniteGuard()
    batches = _batches(6, 32)
    for step in (1, 2, 3):  # a clean window: checked, no error
        guard.update(train_step(recipe, G, D, opt_g, opt_d, batches[step - 1], g_step=True, amp=False))
    guard.check(3)
    for step in (4, 5, 6):  # NaN only in step 4; the flag stays down until the check at step 6
        recipe.poison = poison if step == 4 else None
        guard.update(train_step(recipe, G, D, opt_g, opt_d, batches[step - 1], g_step=True, amp=False))
    with pytest.raises(FloatingPointError, match=re.escape(f"non-finite {message} in steps 4-6;")):
        guard.check(6)
    guard.check(7)  # flags were reset by the failed check


def test_guard_names_both_losses_and_handles_float_logs_and_resume() -> None:
    guard = NonFiniteGuard(start_step=10)  # resumed at step 10: the first window starts at 11
    guard.update({"d_total": torch.tensor(float("inf")), "g_total": float("nan"), "d_real": torch.tensor(float("nan"))})
    with pytest.raises(
        FloatingPointError, match=r"discriminator loss \(d_total\) and generator loss \(g_total\) in step 11;"
    ):
        guard.check(11)
    guard.update({"d_real": torch.tensor(float("nan"))})  # only d_total / g_total are guarded
    guard.check(12)


# -- optimisers and options ------------------------------------------------------------------------------------
def test_build_optimizers_uses_the_configs_lr_and_betas() -> None:
    cfg = ModelConfig(arch=TINY, resolution=32, steps=1, lr_g=1e-4, lr_d=3e-4, betas=(0.0, 0.9))
    recipe = build_recipe(cfg)
    G, D = recipe.build_generator(), recipe.build_discriminator()
    opt_g, opt_d = build_optimizers(G, D, cfg)
    assert isinstance(opt_g, torch.optim.Adam) and isinstance(opt_d, torch.optim.Adam)
    (g,), (d,) = opt_g.param_groups, opt_d.param_groups
    assert (g["lr"], d["lr"], g["betas"], d["betas"]) == (1e-4, 3e-4, (0.0, 0.9), (0.0, 0.9))
    assert len(g["params"]) == len(list(G.parameters())) and len(d["params"]) == len(list(D.parameters()))
    from chromapipe.training.step import fused_adam_supported

    assert g["fused"] == (True if fused_adam_supported(list(G.parameters())) else None)
    assert not fused_adam_supported([torch.zeros(2, dtype=torch.long)])


def test_compile_is_in_place_and_keeps_state_dict_keys() -> None:
    recipe = build_recipe(ModelConfig(arch=TINY, resolution=32, steps=1))
    G = recipe.build_generator()
    keys = list(G.state_dict())
    out = apply_performance_options(G, channels_last=True, compile=True)  # compiles lazily: nothing runs here
    assert out is G and list(out.state_dict()) == keys
    assert out.net[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_compile_mode_reaches_torch_compile(monkeypatch) -> None:
    """``train.compile_mode`` is handed to torch.compile as its ``mode`` ("reduce-overhead": CUDA graphs)."""
    seen: list[dict] = []
    monkeypatch.setattr(torch, "compile", lambda fn, *a, **kw: seen.append(kw) or fn)
    G = build_recipe(ModelConfig(arch=TINY, resolution=32, batch_size=2, steps=1)).build_generator()
    apply_performance_options(G, channels_last=False, compile=True, compile_mode="reduce-overhead")
    apply_performance_options(G, channels_last=False, compile=False, compile_mode="max-autotune")
    assert [kw.get("mode") for kw in seen] == ["reduce-overhead"]


def test_discriminator_compilable_only_without_gradient_penalty() -> None:
    def recipe(arch: str, **options):
        return build_recipe(
            ModelConfig(arch=arch, resolution=256 if arch != "chromagan" else 224, steps=1, options=options)
        )

    assert discriminator_compilable(recipe("pix2pix"))
    assert not discriminator_compilable(recipe("pix2pix", critic="wgan_gp"))
    assert not discriminator_compilable(recipe("chromagan"))
    assert discriminator_compilable(recipe("palgan"))
    assert discriminator_compilable(recipe(TINY))


PAPER = load_params(Path(__file__).resolve().parents[1] / "params-paper.yaml")


# PalGAN (spectral norm, PalNorm, attention: the most to trace) in the default suite; the others, each tracing
# for seconds (reports/benchmarks.md, "Test suite: …"), slow
@pytest.mark.parametrize(
    "name",
    [
        pytest.param("pix2pix_class", marks=pytest.mark.slow),
        pytest.param("chromagan", marks=pytest.mark.slow),
        "palgan",
    ],
)
def test_paper_networks_compile_whole_without_graph_breaks(name: str) -> None:
    """Each paper network is one graph per mode for Dynamo: with ``reduce-overhead`` each becomes one CUDA graph.

    Traced with the ``eager`` backend (Dynamo's tracing decides where graphs break, not the backend; inductor's
    kernel generation would add minutes on 2 cores): a training iteration, then the generator in eval mode
    without autograd, as validation calls it. A ``.item()``, a print or a data-dependent branch in a forward
    would break the graph and fail here. One architecture per recipe: pix2pix ② (U-Net with dropout, the
    classification head, the PatchGAN), ChromaGAN (VGG16 backbone; its critic is not compiled: gradient
    penalty), PalGAN (PalNorm, chromatic attention, spectral norm's power iterations).
    """
    cfg = PAPER.model(name)
    cfg = dataclasses.replace(cfg, resolution=64) if cfg.arch == "palgan" else cfg
    recipe = build_recipe(cfg)
    torch.manual_seed(0)
    G, D = recipe.build_generator(), recipe.build_discriminator()
    opt_g, opt_d = build_optimizers(G, D, cfg)
    torch._dynamo.reset()
    before = compile_stats()
    G.compile(backend="eager")
    if discriminator_compilable(recipe):
        D.compile(backend="eager")
    batch = recipe.prepare_batch(_batches(1, cfg.resolution)[0])
    train_step(recipe, G, D, opt_g, opt_d, batch, g_step=True, amp=False)
    G.eval()
    with torch.no_grad():
        G(**recipe.generator_inputs(batch))
    after = compile_stats()
    assert after["graph_breaks"] == before["graph_breaks"], compile_problems(before, after, "cpu", "default")
    # G in training and in eval without autograd; D as trained and frozen for the G update
    assert after["graphs"] - before["graphs"] == (4 if discriminator_compilable(recipe) else 2)


def test_each_model_compiles_afresh_past_dynamos_recompile_limit(monkeypatch) -> None:
    """A process compiling model after model (the Ray worker, bench_train) keeps compiling each one.

    Dynamo's graphs are kept per forward function, so without a reset the models of one class share a
    budget of ``recompile_limit`` graphs and the later ones run eagerly. The limit is lowered to 2 here (8 by
    default: PalGAN's fifth pair hit it) and the ``eager`` backend stands in for inductor (Dynamo's caches
    are the subject, not the kernels).
    """
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real_compile(fn, backend="eager"))
    cfg = ModelConfig(arch=TINY, resolution=32, batch_size=2, steps=1)

    def graphs_per_model(compiled_pair) -> list[int]:
        torch._dynamo.reset()
        counts = []
        for _ in range(3):
            recipe = build_recipe(cfg)
            G, D = compiled_pair(recipe)
            before = compile_stats()["graphs"]
            train_step(
                recipe,
                G,
                D,
                *build_optimizers(G, D, cfg),
                recipe.prepare_batch(_batches(1, 32)[0]),
                g_step=True,
                amp=False,
            )
            counts.append(compile_stats()["graphs"] - before)
        return counts

    with torch._dynamo.config.patch(recompile_limit=2):
        fresh = graphs_per_model(
            lambda r: apply_to_pair(r, r.build_generator(), r.build_discriminator(), channels_last=False, compile=True)
        )
        stale = graphs_per_model(
            lambda r: tuple(
                apply_performance_options(net, channels_last=False, compile=True)
                for net in (r.build_generator(), r.build_discriminator())
            )
        )
    assert fresh == [3, 3, 3]  # G; D as trained and as frozen for the G update
    assert stale[0] == 3 and stale[-1] < 3, stale  # without the reset the third pair runs (partly) eagerly


def test_compile_stats_count_a_graph_break_and_the_loop_says_where_to_look() -> None:
    def broken(x: torch.Tensor) -> torch.Tensor:
        x = x + 1
        torch._dynamo.graph_break()
        return x * 2

    torch._dynamo.reset()
    before = compile_stats()
    watch = CompileWatch("cpu", "default")
    assert torch.equal(torch.compile(broken, backend="eager")(torch.ones(3)), torch.full((3,), 4.0))
    after = compile_stats()
    since_start, problems = watch.look()  # what the loop logs to MLflow, and warns about once
    assert since_start == {"graphs": 2, "graph_breaks": 1, "cudagraph_skips": 0} and len(problems) == 1
    assert watch.look() == (since_start, [])
    assert after["graph_breaks"] - before["graph_breaks"] == 1 and after["graphs"] - before["graphs"] == 2
    (problem,) = compile_problems(before, after, "cpu", "default")
    assert "1 place(s)" in problem and "TORCH_LOGS=graph_breaks" in problem
    skipped = after | {"graph_breaks": before["graph_breaks"], "cudagraph_skips": before["cudagraph_skips"] + 2}
    assert compile_problems(before, skipped, "cpu", "reduce-overhead") == []  # no CUDA graphs on a CPU: not news
    assert compile_problems(before, skipped, "cuda", "default") == []
    (problem,) = compile_problems(before, skipped, "cuda", "reduce-overhead")
    assert "2 compiled graph(s)" in problem and "TORCH_LOGS=cudagraphs" in problem


def test_batch_to_channels_last_converts_images_only() -> None:
    batch = batch_to_channels_last(_batches(1, 16)[0] | {"probs": torch.rand(2, 5)})
    assert batch["ab"].is_contiguous(memory_format=torch.channels_last) and not batch["ab"].is_contiguous()
    assert batch["probs"].is_contiguous() and torch.equal(batch["ab"], _batches(1, 16)[0]["ab"])


# -- the options compute what the plain path computes ----------------------------------------------------------
def test_channels_last_matches_plain_tiny_recipe() -> None:
    cfg = ModelConfig(arch=TINY, resolution=32, batch_size=2, steps=3)
    batches = _batches(3, 32)
    plain_logs, plain = _train(cfg, batches)
    fast_logs, fast = _train(cfg, batches, channels_last=True)
    _assert_logs_close(plain_logs, fast_logs, rtol=1e-5)
    for key, value in plain.items():
        torch.testing.assert_close(fast[key], value, rtol=0, atol=1e-6, msg=key)
    assert fast["G.net.0.weight"].is_contiguous(memory_format=torch.channels_last)


def test_channels_last_matches_plain_palgan() -> None:
    cfg = ModelConfig(arch="palgan", resolution=64, batch_size=2, steps=2)
    batches = _batches(2, 64)
    plain_logs, plain = _train(cfg, batches, sgd_lr=1e-3)
    fast_logs, fast = _train(cfg, batches, channels_last=True, sgd_lr=1e-3)
    _assert_logs_close(plain_logs, fast_logs, rtol=1e-3)
    recipe = build_recipe(cfg)
    torch.manual_seed(0)  # the initial weights, as _train draws them
    G, D = recipe.build_generator(), recipe.build_discriminator()
    init = {f"G.{k}": v for k, v in G.state_dict().items()} | {f"D.{k}": v for k, v in D.state_dict().items()}
    floats = [k for k in plain if plain[k].is_floating_point()]
    update = torch.cat([(plain[k] - init[k]).flatten() for k in floats])
    diff = torch.cat([(fast[k] - plain[k]).flatten() for k in floats])
    assert update.norm() > 0 and diff.norm() <= 3e-2 * update.norm(), (diff.norm(), update.norm())


def _cxx_compiler() -> str | None:
    return next((c for c in ("g++", "c++", "clang++") if shutil.which(c)), None)


@pytest.mark.slow
@pytest.mark.skipif(
    _cxx_compiler() is None, reason="torch.compile on CPU (inductor) needs a C++ compiler; none on PATH"
)
def test_compile_matches_plain_tiny_recipe() -> None:
    """torch.compile of G and D (inductor, CPU: kernel compilation dominates the test's time). Losses to 1e-4
    relative, parameters to 1e-5 absolute: inductor fuses and reorders the element-wise work."""
    cfg = ModelConfig(arch=TINY, resolution=32, batch_size=2, steps=2)
    batches = _batches(2, 32)
    torch._dynamo.reset()
    plain_logs, plain = _train(cfg, batches)
    fast_logs, fast = _train(cfg, batches, compile=True)
    _assert_logs_close(plain_logs, fast_logs, rtol=1e-4)
    for key, value in plain.items():
        torch.testing.assert_close(fast[key], value, rtol=1e-4, atol=1e-5, msg=key)


def test_bf16_autocast_stays_close_to_float32_tiny_recipe() -> None:
    """``train.amp`` (bf16 autocast, on CPU here as on a GPU): the same 3 steps' losses within 2 % of float32
    (bf16 keeps 8 bits of mantissa: ~0.4 % per rounding; what this test measured: reports/benchmarks.md,
    "Test suite: …"). A bound, not equality."""
    cfg = ModelConfig(arch=TINY, resolution=32, batch_size=2, steps=3)
    batches = _batches(3, 32)
    plain_logs, _ = _train(cfg, batches)
    bf16_logs, _ = _train(cfg, batches, amp=True)
    _assert_logs_close(plain_logs, bf16_logs, rtol=2e-2)


def test_configure_device_sets_cudnn_autotuning_on_gpus_only() -> None:
    from chromapipe.config import TrainConfig
    from chromapipe.training.batches import configure_device

    before = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = False
        configure_device(torch.device("cpu"), TrainConfig(cudnn_benchmark=True))
        assert torch.backends.cudnn.benchmark is False
        configure_device(torch.device("cuda"), TrainConfig(cudnn_benchmark=True))  # a device object, no GPU needed
        assert torch.backends.cudnn.benchmark is True
        configure_device(torch.device("cuda"), TrainConfig(cudnn_benchmark=False))
        assert torch.backends.cudnn.benchmark is False
    finally:
        torch.backends.cudnn.benchmark = before
