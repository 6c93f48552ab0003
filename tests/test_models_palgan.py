"""PalGAN recipe: the paper's 22 M inference size, CA ablation variants, shapes, reference palettes, training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from chromapipe.config import ConfigError, ModelConfig
from chromapipe.models.base import count_parameters
from chromapipe.models.palgan import PalGANGenerator, PalGANRecipe
from chromapipe.models.registry import build_recipe, validate_model
from chromapipe.training.step import train_step

PAPER_PARAMS = 22_000_000  # inference part (E + G): "22M" (supplement §1.1, docs/papers.md#palgan-architecture)
VARIANTS = ("both", "global", "local", "none")


def cfg(res: int = 256, **options) -> ModelConfig:
    return ModelConfig(arch="palgan", resolution=res, steps=1, options=options)


def lab_batch(res: int) -> dict[str, torch.Tensor]:
    """Two real photos (skimage chelsea, coffee) as a Lab batch, the trainer's batch layout."""
    import skimage.data

    from chromapipe.color import rgb_to_lab

    imgs = [
        torch.from_numpy(getattr(skimage.data, n)()).permute(2, 0, 1).float()[None] / 255 for n in ("chelsea", "coffee")
    ]
    rgb = torch.cat(
        [F.interpolate(i, size=(res, res), mode="bilinear", antialias=True, align_corners=False) for i in imgs]
    )
    lab = rgb_to_lab(rgb)
    return {"L": lab[:, :1], "ab": lab[:, 1:], "label": torch.full((2,), -1), "rgb": rgb}


@pytest.fixture(scope="module")
def recipe() -> PalGANRecipe:
    return build_recipe(cfg())


@pytest.fixture(scope="module")
def G(recipe):
    torch.manual_seed(0)
    return recipe.build_generator().eval()


def test_parameter_counts(recipe, G) -> None:
    total = count_parameters(recipe.inference_modules(G))
    assert abs(total - PAPER_PARAMS) / PAPER_PARAMS < 0.02, total
    assert count_parameters(G.E) == 2_616_832  # 6 convs + FC(4096, 256), fixed by the layer list
    assert total == 21_982_102  # pinned: catches accidental changes
    for variant in ("global", "local", "none"):
        assert count_parameters(PalGANGenerator(attention=variant)) < total
    assert count_parameters(recipe.build_discriminator()) == 1_110_337


@pytest.mark.parametrize("res", [256, 128])
def test_shapes_and_ranges(recipe, G, res) -> None:
    batch = lab_batch(res)
    with torch.no_grad():
        out = G(recipe.encode_L(batch["L"]))
    assert out["ab"].shape == (2, 2, res, res) and out["ab"].abs().max() <= 1
    assert out["palette"].shape == (2, 256) and torch.allclose(out["palette"].sum(1), torch.ones(2), atol=1e-5)
    assert ((out["palette_raw"] > 0) & (out["palette_raw"] < 1)).all()
    ab = recipe.predict(G, batch["L"])["ab"]
    assert ab.shape == (2, 2, res, res) and ab.abs().max() <= 128
    with torch.no_grad():
        D = recipe.build_discriminator()
        prepared = recipe.prepare_batch(batch)
        assert D(torch.cat([recipe.encode_L(batch["L"]), out["ab"]], 1), prepared["palette"]).shape == (2,)


def test_resolution_and_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="multiple of 64"):
        validate_model("p", cfg(res=200))
    with pytest.raises(ConfigError, match="attention"):
        validate_model("p", cfg(attention="sideways"))
    with pytest.raises(ConfigError, match="gt_palette_prob"):
        validate_model("p", cfg(gt_palette_prob=1.5))
    validate_model("p", cfg(res=128, attention="none"))


def test_reference_palette_changes_the_output(recipe, G) -> None:
    batch = lab_batch(recipe.resolution)  # at the model's resolution predict() runs G on L unchanged
    refs = recipe.reference_palette(batch["rgb"])  # chelsea (browns/greys) and coffee (reds/whites)
    assert refs.shape == (2, 256) and torch.allclose(refs.sum(1), torch.ones(2))
    assert torch.allclose(refs, recipe.palette_target(batch["ab"]), atol=1e-6)
    L = batch["L"][:1]
    ab_a = recipe.predict(G, L, palette=refs[:1])["ab"]
    ab_b = recipe.predict(G, L, palette=refs[1:])["ab"]
    assert (ab_a - ab_b).abs().mean() > 1e-3  # a different palette gives different colours
    assert not torch.allclose(ab_a, recipe.predict(G, L)["ab"])  # and differs from E's own palette
    # a (1,256) reference broadcasts over the batch; a mask mixes reference and ĥ per sample
    both = recipe.predict(G, batch["L"], palette=refs[:1])["ab"]
    assert torch.allclose(both[:1], ab_a, atol=1e-2)  # Lab units; batch-size-dependent rounding
    with torch.no_grad():
        mixed = G(recipe.encode_L(batch["L"]), palette=refs[1:], palette_mask=torch.tensor([True, False]))["ab"]
    assert torch.allclose(recipe.decode_ab(mixed[:1]), ab_b, atol=1e-2)
    assert torch.allclose(recipe.decode_ab(mixed[1:]), recipe.predict(G, batch["L"][1:])["ab"], atol=1e-2)


def test_sampled_palettes_give_diverse_colorizations(recipe, G) -> None:
    L = lab_batch(128)["L"][:1]
    with torch.no_grad():
        h = G(recipe.encode_L(L))["palette"]
    draws = recipe.sample_palettes(h, 2, generator=torch.Generator().manual_seed(0), temperature=2.0)
    assert draws.shape == (2, 1, 256)
    assert (
        recipe.predict(G, L, palette=draws[0])["ab"] - recipe.predict(G, L, palette=draws[1])["ab"]
    ).abs().mean() > 1e-3


@pytest.mark.parametrize("attention", VARIANTS)
def test_adam_steps_reduce_reconstruction_loss(attention) -> None:
    """64² (the smallest size E's six stride-2 convs allow) keeps four 22 M models within seconds."""
    torch.manual_seed(0)
    recipe = build_recipe(cfg(res=64, attention=attention))
    G = recipe.build_generator()
    batch = recipe.prepare_batch(lab_batch(64))
    target = recipe.encode_ab(batch["ab"])
    opt = torch.optim.Adam(G.parameters(), lr=1e-4, betas=(0.5, 0.999))
    losses = []
    for _ in range(5):  # Adam's first step overshoots (every weight moves by ~lr); later ones descend
        out = G(recipe.encode_L(batch["L"]), palette=batch["palette"])
        loss = F.l1_loss(out["ab"], target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0], losses


def test_gan_training_step_and_log_keys() -> None:
    torch.manual_seed(0)
    recipe = build_recipe(cfg(res=128, gt_palette_prob=0.5))
    G, D = recipe.build_generator(), recipe.build_discriminator()
    opt_g, opt_d = torch.optim.Adam(G.parameters(), 2e-4), torch.optim.Adam(D.parameters(), 2e-4)
    batch = recipe.prepare_batch(lab_batch(128))
    inputs = recipe.generator_inputs(batch)
    assert set(inputs) == {"L", "palette", "palette_mask"} and inputs["palette_mask"].dtype == torch.bool
    logs = train_step(recipe, G, D, opt_g, opt_d, batch, g_step=True, amp=False)
    assert {"d_real", "d_fake", "d_total", "g_adv", "g_l1", "g_palette", "g_total"} <= set(logs)
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    assert set(PalGANRecipe.default_loss) == {"adv", "l1", "palette"}
    assert set(build_recipe(cfg(res=128, gt_palette_prob=0.0)).generator_inputs(batch)) == {"L"}


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_palnorm_is_instance_norm_then_the_palette_affine(dtype: torch.dtype, tol: float) -> None:
    """PalNorm's one-kernel form computes the paper's norm(x)·(1+γ)+β: outputs and every gradient (x, the
    palette feature, the MLP's weights) agree to rounding (figures: reports/benchmarks.md, "Where PalGAN's
    step goes"); channels_last input too."""
    from chromapipe.models.palgan import PalNorm

    torch.manual_seed(0)
    norm = PalNorm(16, 32).to(dtype)
    x = (torch.randn(3, 16, 8, 8, dtype=dtype) * 3 + 1).requires_grad_()
    p = torch.rand(3, 256, dtype=dtype).requires_grad_()

    def reference(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        gamma, beta = norm.mlp(p)[:, :, None, None].chunk(2, dim=1)
        return F.instance_norm(x, eps=norm.norm.eps) * (1 + gamma) + beta

    out, ref = norm(x, p), reference(x, p)
    assert out.shape == ref.shape and (out - ref).abs().max() <= tol * ref.abs().max()
    g = torch.randn_like(ref)
    inputs = [x, p, *norm.parameters()]
    ours, theirs = torch.autograd.grad(out, inputs, g), torch.autograd.grad(ref, inputs, g)
    for a, b in zip(ours, theirs, strict=True):
        assert (a - b).abs().max() <= tol * b.abs().max().clamp_min(1.0)
    nhwc = x.detach().contiguous(memory_format=torch.channels_last)
    assert torch.allclose(norm(nhwc, p), ref, rtol=0, atol=tol * float(ref.abs().max()))


def test_global_attention_hands_contiguous_tokens_to_sdpa(monkeypatch) -> None:
    """q, k, v reach scaled_dot_product_attention with a unit stride in the last dimension (the fused
    kernels' condition on a GPU), and the result is the attention of the same tokens."""
    from chromapipe.models import palgan

    seen = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, *a, **kw):
        seen.append([t.stride(-1) for t in (q, k, v)])
        return real(q, k, v, *a, **kw)

    monkeypatch.setattr(palgan.F, "scaled_dot_product_attention", spy)
    torch.manual_seed(0)
    ca = palgan.ChromaticAttention(32, 16, 8, use_global=True, use_local=False)
    x, S = torch.randn(2, 32, 16, 16), torch.randn(2, 16, 4, 4)
    out = ca.global_interaction(x, S)
    assert seen == [[1, 1, 1]]
    q = ca.query(palgan.resize(S, (16, 16))).flatten(2).transpose(1, 2)
    k = ca.key(S).flatten(2).transpose(1, 2)
    v = ca.value(F.adaptive_avg_pool2d(x, (4, 4))).flatten(2).transpose(1, 2)
    expected = (torch.softmax(q @ k.transpose(1, 2) / 8**0.5, dim=-1) @ v).transpose(1, 2).reshape(2, 32, 16, 16)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
