"""pix2pix (thesis) recipe: parameter counts against the published figures, shapes, scaling, losses, training.

The 97 M generator is built once per module (``g_class``) and its initial weights restored before each
training test, so the module stays within a few seconds of network construction.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from chromapipe.config import ConfigError, ModelConfig, build_dataclass
from chromapipe.models import losses
from chromapipe.models.base import count_parameters
from chromapipe.models.pix2pix import Options, PatchGAN, Pix2PixRecipe, UNetGenerator
from chromapipe.models.registry import build_recipe, validate_model

RES = 256
CONFIGS = {  # the thesis' three configurations (docs/papers.md#thesis-losses)
    "pix2pix": ModelConfig(arch="pix2pix", steps=1),
    "pix2pix_class": ModelConfig(arch="pix2pix", steps=1, loss={"ce": 0.003}, options={"num_classes": 205}),
    "pix2pix_wgan_class": ModelConfig(
        arch="pix2pix", steps=1, n_critic=5, loss={"adv": 0.1, "l1": 0.0, "l2": 1.0, "ce": 0.003, "gp": 10.0},
        options={"num_classes": 205, "critic": "wgan_gp"},
    ),
}  # fmt: skip


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
    return {"L": lab[:, :1], "ab": lab[:, 1:], "label": torch.tensor([3, 150])}


@pytest.fixture(scope="module")
def batch() -> dict[str, torch.Tensor]:
    return lab_batch(RES)


@pytest.fixture(scope="module")
def g_plain() -> tuple[UNetGenerator, dict]:
    torch.manual_seed(0)
    G = UNetGenerator()
    return G, copy.deepcopy(G.state_dict())


@pytest.fixture(scope="module")
def g_class() -> tuple[UNetGenerator, dict]:
    torch.manual_seed(0)
    G = UNetGenerator(num_classes=205)
    return G, copy.deepcopy(G.state_dict())


# -- parameter counts ------------------------------------------------------------------------------------------
def test_generator_without_branch_is_54m(g_plain):
    n = count_parameters(g_plain[0])
    assert n == 54_410_882
    assert abs(n - 54e6) / 54e6 < 0.02  # the thesis slide 8's "54 M" (docs/papers.md#thesis-architecture)


def test_generator_with_205_class_branch_is_exactly_97096015(g_class):
    assert count_parameters(g_class[0]) == 97_096_015


def test_patchgan_is_exactly_2765569():
    assert count_parameters(PatchGAN(norm=True)) == 2_765_569
    assert count_parameters(PatchGAN(norm=False)) == 2_765_569 - 2 * (128 + 256 + 512)  # BN removed for WGAN-GP


def test_inference_part_drops_only_the_class_head(g_class, g_plain):
    recipe = build_recipe(CONFIGS["pix2pix_class"])
    head = count_parameters(g_class[0].branch.head)
    assert count_parameters(recipe.inference_modules(g_class[0])) == 97_096_015 - head
    assert count_parameters(build_recipe(CONFIGS["pix2pix"]).inference_modules(g_plain[0])) == 54_410_882


def test_generator_file_leaves_out_the_class_head_and_colorizes_the_same(g_class, batch, tmp_path):
    """The exported generator holds what colorization needs (the fusion vector stays, the class head goes):
    the same ab as the full network in eval mode, no logits, and a file smaller by the head's weights."""
    from chromapipe.models.checkpoint import load_generator, save_generator

    G, state = g_class
    G.load_state_dict(state)
    cfg = CONFIGS["pix2pix_class"]
    save_generator(tmp_path / "generator.pt", "pix2pix_class", cfg, G)
    recipe, loaded, _ = load_generator(tmp_path / "generator.pt")
    assert loaded.branch.head is None and count_parameters(loaded) == 97_096_015 - count_parameters(G.branch.head)
    saved = torch.load(tmp_path / "generator.pt", weights_only=True)["state_dict"]
    assert not any(k.startswith("branch.head.") for k in saved) and any(k.startswith("branch.fusion.") for k in saved)
    G.eval()
    with torch.no_grad():
        L = recipe.encode_L(batch["L"])
        full, exported = G(L), loaded(L)
    assert "logits" not in exported
    torch.testing.assert_close(exported["ab"], full["ab"])
    # a file written before heads were left out (full state dict) still loads
    torch.save(
        {**torch.load(tmp_path / "generator.pt", weights_only=True), "state_dict": G.state_dict()}, tmp_path / "old.pt"
    )
    torch.testing.assert_close(load_generator(tmp_path / "old.pt")[1](L)["ab"], full["ab"])


# -- configuration -----------------------------------------------------------------------------------------------
def test_configs_validate():
    for name, cfg in CONFIGS.items():
        validate_model(name, cfg)


def test_resolution_must_be_multiple_of_256():
    with pytest.raises(ValueError, match="multiple of 256"):
        build_recipe(ModelConfig(arch="pix2pix", steps=1, resolution=224))
    with pytest.raises(ValueError, match="multiple of 256"):
        UNetGenerator()(torch.zeros(1, 1, 128, 128))


def test_teacher_labels_need_1000_classes():
    with pytest.raises(ConfigError, match="num_classes must be 1000"):
        build_dataclass(Options, {"num_classes": 205, "label_source": "teacher"}, "options")
    build_dataclass(Options, {"num_classes": 1000, "label_source": "teacher"}, "options")


def test_ce_without_branch_is_rejected():
    with pytest.raises(ConfigError, match="num_classes"):
        build_recipe(ModelConfig(arch="pix2pix", steps=1, loss={"ce": 0.003}))


# -- scaling -------------------------------------------------------------------------------------------------------
def test_scaling_follows_the_thesis():
    r = build_recipe(CONFIGS["pix2pix"])
    assert torch.allclose(r.encode_L(torch.tensor([0.0, 50.0, 100.0])), torch.tensor([-1.0, 0.0, 1.0]))
    ab = torch.tensor([-128.0, -64.0, 0.0, 63.5, 127.0])
    assert torch.allclose(r.encode_ab(ab), torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))
    assert torch.allclose(r.decode_ab(r.encode_ab(ab)), ab)


# -- shapes and ranges -------------------------------------------------------------------------------------------
def test_output_shapes_and_ranges(g_class, batch):
    r = build_recipe(CONFIGS["pix2pix_class"])
    G = g_class[0].eval()
    with torch.no_grad():
        out = G(r.encode_L(batch["L"]))
        ab = r.predict(G, batch["L"])["ab"]
    assert out["ab"].shape == (2, 2, RES, RES)
    assert out["ab"].abs().max() <= 1.0
    assert out["logits"].shape == (2, 205)
    assert torch.allclose(out["class_probs"].sum(-1), torch.ones(2), atol=1e-5)
    assert ab.shape == (2, 2, RES, RES) and ab.min() >= -128.0 and ab.max() <= 127.0
    D = PatchGAN()
    assert D(torch.cat([r.encode_L(batch["L"]), out["ab"]], 1)).shape == (2, 1, 30, 30)  # 30×30 patches


# -- losses --------------------------------------------------------------------------------------------------------
def test_gradient_penalty_is_zero_for_unit_norm_linear_critic():
    torch.manual_seed(0)
    w = torch.randn(1, 2, 8, 8)
    w = w / w.norm()  # the critic's input gradient is w for every sample: unit norm everywhere

    def critic(x: torch.Tensor) -> torch.Tensor:
        return (x * w).flatten(1).sum(1)

    real, fake = torch.randn(2, 2, 8, 8), torch.randn(2, 2, 8, 8)
    assert losses.gradient_penalty(critic, real, fake).item() < 1e-8
    assert losses.gradient_penalty(lambda x: 2 * critic(x), real, fake).item() == pytest.approx(1.0, abs=1e-5)
    # several inputs share alpha and one norm: weights split across two tensors, total norm 1
    two = losses.gradient_penalty(lambda a, b: critic(a) * 0.6 + critic(b) * 0.8, [real, real], [fake, fake])
    assert two.item() < 1e-8


def test_bce_one_sided_label_smoothing():
    logits = torch.zeros(4)
    d_real, d_fake = losses.bce_discriminator_loss(logits, logits, real_label=0.9)
    assert d_real.item() == pytest.approx(
        torch.log(torch.tensor(2.0)).item(), abs=1e-6
    )  # BCE at p=0.5 is log 2 for any target
    big = torch.full((4,), 10.0)
    assert (
        losses.bce_discriminator_loss(big, big, 0.9)[0] > losses.bce_discriminator_loss(big, big, 1.0)[0]
    )  # over-confidence penalised


def test_cross_entropy_ignores_missing_labels():
    logits = torch.randn(3, 5, requires_grad=True)
    assert losses.masked_cross_entropy(logits, torch.full((3,), -1)).item() == 0.0
    ce = losses.masked_cross_entropy(logits, torch.tensor([1, -1, 2]))
    assert ce.item() == pytest.approx(F.cross_entropy(logits[[0, 2]], torch.tensor([1, 2])).item())


# -- a few optimiser steps reduce the reconstruction loss ----------------------------------------------------------
def _fit(recipe: Pix2PixRecipe, G: torch.nn.Module, batch: dict, recon: str) -> tuple[float, float]:
    """One D step and one Adam G step on a fixed batch; the reconstruction term before and after.

    Fused Adam: several times faster than the default on CPU for these 50-100 M parameter networks
    (reports/benchmarks.md, "Training fast path and the thesis's own code").
    """
    D = recipe.build_discriminator()
    batch = recipe.prepare_batch(batch)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999), fused=True)
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999), fused=True)
    G.train()
    torch.manual_seed(1)  # the same dropout masks before and after: the two values are comparable
    out = G(**recipe.generator_inputs(batch))
    d_loss, d_logs = recipe.discriminator_loss(D, batch, {k: v.detach() for k, v in out.items()})
    assert torch.isfinite(d_loss) and all(k.startswith("d_") for k in d_logs)
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    loss, logs = recipe.generator_loss(D, batch, out)
    assert torch.isfinite(loss) and all(k.startswith("g_") for k in logs)
    opt_g.zero_grad()
    loss.backward()
    opt_g.step()
    torch.manual_seed(1)
    with torch.no_grad():
        _, after = recipe.generator_loss(D, batch, G(**recipe.generator_inputs(batch)))
    return logs[recon], after[recon]


@pytest.mark.parametrize("name,recon", [("pix2pix", "g_l1"), ("pix2pix_class", "g_l1"), ("pix2pix_wgan_class", "g_l2")])
def test_adam_steps_reduce_reconstruction_loss(name, recon, g_plain, g_class, batch):
    torch.manual_seed(0)
    G, state = g_plain if name == "pix2pix" else g_class
    G.load_state_dict(state)
    before, after = _fit(build_recipe(CONFIGS[name]), G, batch, recon)
    assert after < before


def test_wgan_critic_has_no_batchnorm():
    D = build_recipe(CONFIGS["pix2pix_wgan_class"]).build_discriminator()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in D.modules())


def test_teacher_pseudo_labels_come_from_the_color_image(batch):
    r = build_recipe(
        ModelConfig(
            arch="pix2pix", steps=1, loss={"ce": 0.003}, options={"num_classes": 1000, "label_source": "teacher"}
        )
    )
    labels = r.prepare_batch(batch)["label"].tolist()
    assert labels[0] in {281, 282, 285} and labels[1] == 967  # chelsea: tabby classes, coffee: espresso
    assert r.describe()["teacher"]["name"] == "efficientnet_lite0"


# -- `chromapipe models` -----------------------------------------------------------------------------------------
def test_models_command_lists_counts(tmp_path, capsys):
    import json

    import yaml

    from chromapipe.cli import main

    models = {
        name: {
            "arch": c.arch,
            "dataset": "sample",
            "steps": 1,
            "n_critic": c.n_critic,
            "loss": c.loss,
            "options": c.options,
        }
        for name, c in CONFIGS.items()
    }
    models["chromagan"] = {
        "arch": "chromagan",
        "dataset": "sample",
        "resolution": 224,
        "steps": 1,
        "options": {"backbone_weights": "random"},
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"datasets": {"sample": {}}, "models": models}))
    assert main(["models", "--params", str(path), "--json"]) == 0
    rows = {r["model"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["pix2pix"]["generator"] == 54_410_882 and rows["pix2pix"]["discriminator"] == 2_765_569
    assert rows["pix2pix_class"]["generator"] == 97_096_015
    assert rows["pix2pix_wgan_class"]["discriminator"] == 2_763_777
    assert rows["chromagan"]["resolution"] == 224 and rows["chromagan"]["inference"] < rows["chromagan"]["generator"]
    assert main(["models", "--params", str(path)]) == 0
    assert "97,096,015" in capsys.readouterr().out
