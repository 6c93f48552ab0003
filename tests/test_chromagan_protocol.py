"""ChromaGAN as its authors trained it: Keras' initialisation and BatchNorm constants on every layer not loaded
from VGG16, the paper's VGG16 teacher when its weights are on the machine (EfficientNet-Lite0 otherwise, recorded
as ours), the teacher picture of the authors' code, and the two ablation rows as loss settings."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from chromapipe.config import ModelConfig, load_params
from chromapipe.models import chromagan, teacher
from chromapipe.models.registry import build_recipe
from chromapipe.reporting import published as pub
from tests.conftest import REPO

RANDOM = {"backbone_weights": "random"}


def _cfg(**options) -> ModelConfig:
    return ModelConfig(arch="chromagan", resolution=224, steps=1, options={**RANDOM, **options})


def _glorot_bound(w: torch.Tensor) -> float:
    receptive = w[0, 0].numel()
    return math.sqrt(6.0 / (w.shape[1] * receptive + w.shape[0] * receptive))


def test_non_vgg_layers_start_as_keras_starts_them() -> None:
    recipe = build_recipe(_cfg(backbone_weights="imagenet"))
    with torch.device("meta"):  # shapes and constants only: no 171 M-parameter init
        G = recipe.build_generator()
    norms = [m for m in G.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 6 and all((m.momentum, m.eps) == (0.01, 1e-3) for m in norms)
    torch.manual_seed(0)
    D = recipe.build_discriminator()
    convs = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
    for conv in convs:  # Glorot-uniform: |w| up to the bound and close to it, zero bias
        bound = _glorot_bound(conv.weight)
        assert 0.98 * bound < conv.weight.abs().max().item() <= bound
        assert torch.count_nonzero(conv.bias) == 0
    torch.manual_seed(0)
    plain = build_recipe(_cfg(init="pytorch")).build_discriminator()
    assert any(torch.count_nonzero(m.bias) for m in plain.modules() if isinstance(m, nn.Conv2d))  # PyTorch's init

    small = nn.Sequential(nn.Linear(300, 100), chromagan.conv_relu_bn(4, 8))
    chromagan.keras_init_(small)
    assert small[0].weight.abs().max().item() <= math.sqrt(6 / 400) and torch.count_nonzero(small[0].bias) == 0
    assert (small[1][2].momentum, small[1][2].eps) == (0.01, 1e-3)


def test_auto_teacher_is_vgg16_when_its_weights_are_here(monkeypatch) -> None:
    from torchvision.models import vgg16

    torch.manual_seed(0)
    state = vgg16(weights=None).state_dict()
    monkeypatch.setattr(teacher, "vgg16_classifier_present", lambda: True)
    monkeypatch.setattr(teacher, "vgg16_classifier_state_dict", lambda: (state, {"name": "vgg16_classifier"}))
    recipe = build_recipe(_cfg())
    L = torch.rand(2, 1, 224, 224) * 100
    batch = recipe.prepare_batch({"L": L, "ab": torch.zeros(2, 2, 224, 224), "label": torch.full((2,), -1)})
    assert recipe._teacher.name == "vgg16" and batch["teacher_probs"].shape == (2, 1000)
    torch.testing.assert_close(batch["teacher_probs"].sum(-1), torch.ones(2))
    (note,) = recipe.describe()["ours"]
    assert "torchvision's ImageNet VGG16" in note


def test_auto_teacher_falls_back_to_efficientnet_and_says_so(monkeypatch) -> None:
    monkeypatch.setattr(teacher, "vgg16_classifier_present", lambda: False)
    recipe = build_recipe(_cfg())
    recipe.setup(torch.device("cpu"))
    assert recipe._teacher.name == "efficientnet_lite0"
    (note,) = recipe.describe()["ours"]
    assert note.startswith("KL teacher: EfficientNet-Lite0 instead of the paper's VGG16") and "weights cache" in note
    without_kl = build_recipe(ModelConfig(arch="chromagan", resolution=224, steps=1, loss={"kl": 0.0}, options=RANDOM))
    without_kl.setup(torch.device("cpu"))
    assert without_kl._teacher is None and "ours" not in without_kl.describe()  # no KL term, no teacher


def test_teacher_picture_of_the_authors_code() -> None:
    """Keras' VGG16 read the [0, 1] gray image as mean-subtracted pixels: the picture is the ImageNet mean colour
    plus L/100 (0-255 scale), i.e. nearly the same for every photo."""
    L = torch.tensor([0.0, 50.0, 100.0]).view(1, 1, 1, 3)
    authors = build_recipe(_cfg(teacher_input="authors_code")).teacher_picture(L) * 255
    torch.testing.assert_close(authors[0, :, 0, 2], torch.tensor(chromagan.CAFFE_MEAN_RGB) + 1.0)
    assert (authors.amax(-1) - authors.amin(-1)).max() <= 1.0 + 1e-4  # contrast of one 0-255 step
    paper = build_recipe(_cfg()).teacher_picture(L)
    torch.testing.assert_close(paper[0, :, 0, 2], torch.ones(3), atol=2e-3, rtol=0)  # L = 100 -> white


def test_ablation_rows_are_loss_settings_of_the_paper_profile() -> None:
    p = load_params(REPO / "params-paper.yaml")
    base = p.model("chromagan")
    no_class, net = p.model("chromagan_no_class"), p.model("chromanet")
    assert (no_class.loss["kl"], no_class.loss["adv"]) == (0.0, base.loss["adv"])
    assert (net.loss["adv"], net.loss["kl"]) == (0.0, base.loss["kl"])
    for m in (no_class, net):  # everything else is ChromaGAN's
        assert (m.dataset, m.batch_size, m.epochs, m.lr_g, m.options) == (
            base.dataset,
            base.batch_size,
            base.epochs,
            base.lr_g,
            base.options,
        )
    assert pub.paper_row("chromagan_no_class", pub.CHROMAGAN_PSNR) == "ChromaGAN w/o Class"
    assert pub.paper_row("chromanet", pub.CHROMAGAN_PSNR) == "ChromaNet"
    assert pub.value(pub.CHROMAGAN_PSNR, pub.paper_row("chromanet", pub.CHROMAGAN_PSNR), "psnr") == 25.57
    assert set(p.evaluation_sets("chromanet")) == set(p.evaluation_sets("chromagan")) == {"ilsvrc2012_val1k"}


@pytest.mark.parametrize("choice", ["auto", "vgg16", "efficientnet_lite0"])
def test_teacher_choice_is_validated(choice: str) -> None:
    assert build_recipe(_cfg(teacher=choice)).options.teacher == choice
