"""ChromaGAN recipe: architecture sizes, scaling, the backbone-weights error, KL term, a training step.

The 171 M generator is built once per module. The fixture uses ``backbone_weights: random`` so the tests
never depend on which weight files a machine has; the ImageNet path is tested with a stubbed resolver.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from chromapipe.config import ModelConfig
from chromapipe.models import chromagan, losses
from chromapipe.models.base import count_parameters
from chromapipe.models.registry import build_recipe, validate_model
from chromapipe.weights import WeightsUnavailable

RES = 224
CFG = ModelConfig(
    arch="chromagan", resolution=RES, steps=1, lr_g=2e-5, lr_d=2e-5, options={"backbone_weights": "random"}
)


def lab_batch(res: int) -> dict[str, torch.Tensor]:
    import skimage.data

    from chromapipe.color import rgb_to_lab

    imgs = [
        torch.from_numpy(getattr(skimage.data, n)()).permute(2, 0, 1).float()[None] / 255 for n in ("chelsea", "coffee")
    ]
    rgb = torch.cat(
        [F.interpolate(i, size=(res, res), mode="bilinear", antialias=True, align_corners=False) for i in imgs]
    )
    lab = rgb_to_lab(rgb)
    return {"L": lab[:, :1], "ab": lab[:, 1:], "label": torch.full((2,), -1)}


@pytest.fixture(scope="module")
def recipe():
    return build_recipe(CFG)


@pytest.fixture(scope="module")
def G(recipe):
    torch.manual_seed(0)
    return recipe.build_generator()


@pytest.fixture(scope="module")
def batch(recipe):
    return recipe.prepare_batch(lab_batch(RES))


# -- sizes -------------------------------------------------------------------------------------------------------
def test_parameter_counts(recipe, G):
    assert count_parameters(G.backbone) == 7_635_264  # VGG16 conv1_1 … conv4_3 (torchvision features[:23])
    assert count_parameters(G.class_head) == 25088 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1000 + 1000
    assert count_parameters(G) == 171_166_090  # the paper gives no total; pinned to catch accidental changes
    assert count_parameters(recipe.inference_modules(G)) == 171_166_090 - count_parameters(G.class_head)
    D = recipe.build_discriminator()
    assert count_parameters(D) == 2_764_737
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.InstanceNorm2d)) for m in D.modules())


def test_generator_file_is_the_colorization_path_only(recipe, G, batch, tmp_path):
    """The class head (124 M of 171 M parameters) only serves the KL loss: the file leaves it out (a third of
    the size) and the loaded generator colorizes exactly as the full one."""
    from chromapipe.models.checkpoint import load_generator, save_generator

    save_generator(tmp_path / "generator.pt", "chromagan", CFG, G)
    _, loaded, _ = load_generator(tmp_path / "generator.pt")
    assert loaded.class_head is None and count_parameters(loaded) == count_parameters(recipe.inference_modules(G))
    assert (tmp_path / "generator.pt").stat().st_size < 200e6  # 47 M float32 parameters, not 171 M
    G.eval()
    with torch.no_grad():
        L = recipe.encode_L(batch["L"])
        full, exported = G(L), loaded(L)
    assert set(exported) == {"ab"}
    torch.testing.assert_close(exported["ab"], full["ab"])


def test_resolution_is_fixed_at_224():
    validate_model("chromagan", CFG)
    with pytest.raises(ValueError, match="224"):
        build_recipe(ModelConfig(arch="chromagan", resolution=256, steps=1))


# -- scaling, shapes, ranges -------------------------------------------------------------------------------------
def test_scaling_is_opencv_8bit_lab_over_255(recipe):
    L = torch.tensor([0.0, 50.0, 100.0]).view(1, 1, 1, 3)
    enc = recipe.encode_L(L)
    assert enc.shape == (1, 3, 1, 3) and torch.allclose(enc[0, :, 0], torch.tensor([0.0, 0.5, 1.0]).expand(3, 3))
    ab = torch.tensor([-128.0, 0.0, 127.0])
    assert torch.allclose(recipe.encode_ab(ab), torch.tensor([0.0, 128 / 255, 1.0]))
    assert torch.allclose(recipe.decode_ab(recipe.encode_ab(ab)), ab, atol=1e-4)


def test_output_shapes_and_ranges(recipe, G, batch):
    G.eval()
    with torch.no_grad():
        out = G(recipe.encode_L(batch["L"]))
    assert out["ab"].shape == (2, 2, RES, RES)
    assert out["ab"].min() >= 0.0 and out["ab"].max() <= 1.0  # sigmoid
    assert out["logits"].shape == (2, 1000)
    assert torch.allclose(out["class_probs"].sum(-1), torch.ones(2), atol=1e-5)
    ab = recipe.decode_ab(out["ab"])
    assert ab.min() >= -128.0 and ab.max() <= 127.0
    D = recipe.build_discriminator()
    assert D(torch.cat([batch["L"] / 100, out["ab"]], 1)).shape == (2, 1, 28, 28)  # H/8 (Keras 'same')


def test_teacher_target_is_a_distribution(batch):
    p = batch["teacher_probs"]
    assert p.shape == (2, 1000) and torch.allclose(p.sum(-1), torch.ones(2), atol=1e-5)


# -- losses ------------------------------------------------------------------------------------------------------
def test_kl_is_zero_for_identical_distributions():
    torch.manual_seed(0)
    p = torch.randn(3, 1000).softmax(-1)
    assert losses.kl_divergence(p, p.log()).abs().item() < 1e-6
    q = torch.randn(3, 1000).log_softmax(-1)
    ref = F.kl_div(q, p, reduction="batchmean")  # KL(p || exp q)
    assert losses.kl_divergence(p, q).item() == pytest.approx(ref.item(), rel=1e-4)
    assert losses.kl_divergence(p, q).item() > 0


def test_critic_loss_and_gradient_penalty_terms(recipe, batch):
    D = recipe.build_discriminator()
    fake = {"ab": torch.rand(2, 2, RES, RES)}
    loss, logs = recipe.discriminator_loss(D, batch, fake)
    assert torch.isfinite(loss)
    assert set(logs) == {"d_real", "d_fake", "d_wgan", "d_gp"}
    assert loss.item() == pytest.approx(float(logs["d_wgan"] + 10.0 * logs["d_gp"]), rel=1e-3, abs=1e-4)


# -- backbone weights --------------------------------------------------------------------------------------------
def test_imagenet_backbone_loaded_when_resolver_serves_it(monkeypatch):
    ref = chromagan.vgg16_backbone()
    full = {k: torch.full_like(v, 0.5) for k, v in ref.state_dict().items()}
    full["24.weight"] = torch.zeros(512, 512, 3, 3)  # conv5_1: beyond block4_conv3, ignored
    monkeypatch.setattr(
        chromagan, "vgg16_features_state_dict", lambda: (full, {"name": "vgg16_features", "sha256": "x"})
    )
    backbone = chromagan.vgg16_backbone()
    prov = chromagan.load_backbone_weights(backbone)
    assert prov["sha256"] == "x"
    assert all(torch.all(v == 0.5) for v in backbone.state_dict().values())


def test_missing_backbone_weights_stop_with_a_clear_error(monkeypatch):
    def unavailable():
        raise WeightsUnavailable("vgg16_features", "not in the cache")

    monkeypatch.setattr(chromagan, "vgg16_features_state_dict", unavailable)
    monkeypatch.setattr(chromagan, "ChromaGANGenerator", lambda: _SmallGenerator())
    r = build_recipe(ModelConfig(arch="chromagan", resolution=RES, steps=1))
    with pytest.raises(
        WeightsUnavailable, match="not in the cache.*chromapipe weights fetch.*backbone_weights: random"
    ):
        r.build_generator()  # never a silent random backbone
    asked = build_recipe(ModelConfig(arch="chromagan", resolution=RES, steps=1, options={"backbone_weights": "random"}))
    asked.build_generator()
    assert asked.describe()["backbone"]["weights"] == "random"


class _SmallGenerator(torch.nn.Module):
    """Just a ``backbone`` attribute: enough for the weights path without building 171 M params."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = chromagan.vgg16_backbone()


# -- a training step reduces the reconstruction loss -------------------------------------------------------------
def test_adam_step_reduces_mse(recipe, G, batch):
    torch.manual_seed(0)
    D = recipe.build_discriminator()
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-5, betas=(0.5, 0.999), fused=True)
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-5, betas=(0.5, 0.999), fused=True)
    G.train()
    out = G(**recipe.generator_inputs(batch))
    d_loss, _ = recipe.discriminator_loss(D, batch, {k: v.detach() for k, v in out.items()})
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    loss, logs = recipe.generator_loss(D, batch, out)
    assert set(logs) == {"g_mse", "g_adv", "g_kl"} and torch.isfinite(loss)
    opt_g.zero_grad()
    loss.backward()
    opt_g.step()
    with torch.no_grad():
        _, after = recipe.generator_loss(D, batch, G(**recipe.generator_inputs(batch)))
    assert after["g_mse"] < logs["g_mse"]


def test_real_offline_vgg16_weights_load_into_the_backbone():
    """With the cache provisioned (`chromapipe weights fetch`), the ImageNet conv weights really load."""
    from chromapipe.weights import vgg16_features_state_dict

    try:
        state, _ = vgg16_features_state_dict()
    except WeightsUnavailable as exc:
        pytest.skip(f"VGG16 weights not provisioned here: {exc}")
    backbone = chromagan.vgg16_backbone()
    prov = chromagan.load_backbone_weights(backbone)
    assert prov["name"] == "vgg16_features"
    assert torch.equal(backbone[0].weight, state["features.0.weight"])
    assert torch.equal(backbone[21].bias, state["features.21.bias"])
