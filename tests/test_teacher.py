"""The frozen ImageNet teacher: known photos get their known classes, outputs are distributions, no grads."""

from __future__ import annotations

import pytest
import torch

from chromapipe.models.teacher import ImageNetTeacher

TABBY_CLASSES = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
ESPRESSO = 967


@pytest.fixture(scope="module")
def teacher() -> ImageNetTeacher:
    return ImageNetTeacher()


def photo(name: str) -> torch.Tensor:
    import skimage.data

    return torch.from_numpy(getattr(skimage.data, name)()).permute(2, 0, 1).float()[None] / 255.0


def test_known_photos_get_known_classes(teacher):
    probs = teacher(
        torch.cat(
            [torch.nn.functional.interpolate(photo(n), size=(256, 256), mode="bilinear") for n in ("chelsea", "coffee")]
        )
    )
    assert probs.shape == (2, 1000)
    assert torch.allclose(probs.sum(-1), torch.ones(2), atol=1e-5)
    top = probs.argmax(-1).tolist()
    assert top[0] in TABBY_CLASSES
    assert top[1] == ESPRESSO and probs[1, ESPRESSO] > 0.5


def test_any_input_size_and_no_gradients(teacher):
    x = photo("chelsea").requires_grad_(True)  # 300×451, not square
    probs = teacher(x)
    assert probs.argmax(-1).item() in TABBY_CLASSES
    assert not probs.requires_grad
    assert all(not p.requires_grad for p in teacher.parameters())


def test_stays_in_eval_mode(teacher):
    teacher.train()
    assert not teacher.training and not teacher.net.training


def test_provenance_is_recorded(teacher):
    prov = teacher.provenance
    assert prov["name"] == "efficientnet_lite0"
    assert prov.get("sha256") and prov.get("source") and prov.get("path")
    # the one network and weights file the FD proxy uses too (chromapipe.weights.effnet)
    from chromapipe.metrics.frechet import build_effnet

    _, details = build_effnet(torch.device("cpu"))
    assert details["sha256"] == prov["sha256"]


def test_rejects_wrong_shapes(teacher):
    with pytest.raises(ValueError, match="B, 3, H, W"):
        teacher(torch.zeros(1, 1, 224, 224))
