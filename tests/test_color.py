"""The torch L*a*b* conversion agrees with scikit-image, the reference implementation."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.color
import skimage.data
import torch

from chromapipe.color import lab_to_rgb, lab_to_rgb_uint8, rgb_to_lab

# Bounds asserted below (float32 torch vs float64 skimage): |ΔLab| < 2e-4, |ΔRGB| < 1e-5.


@pytest.mark.parametrize("image", ["astronaut", "coffee", "chelsea"])
def test_rgb_to_lab_matches_skimage(image: str) -> None:
    rgb = getattr(skimage.data, image)()
    ours = rgb_to_lab(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0).permute(1, 2, 0).numpy()
    assert np.abs(ours - skimage.color.rgb2lab(rgb)).max() < 2e-4


def test_lab_to_rgb_matches_skimage_on_random_lab() -> None:
    lab = np.random.default_rng(0).uniform([0, -100, -100], [100, 100, 100], size=(32, 32, 3))
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = skimage.color.lab2rgb(lab)
    ours = lab_to_rgb(torch.from_numpy(lab).permute(2, 0, 1).float()).permute(1, 2, 0).numpy()
    assert np.abs(ours - ref).max() < 1e-5


def test_batched_and_uint8_roundtrip_is_exact_on_real_images() -> None:
    rgb = torch.stack(
        [torch.from_numpy(getattr(skimage.data, n)()[:256, :256]).permute(2, 0, 1) for n in ("astronaut", "coffee")]
    )
    back = lab_to_rgb_uint8(rgb_to_lab(rgb.float() / 255.0).half().float())  # the shards' float16
    assert back.shape == rgb.shape
    assert int((back.int() - rgb.int()).abs().max()) <= 1


def test_uint8_lookup_table_path_matches_the_formula_on_every_color() -> None:
    """The prepare stage's LUT conversion agrees with rgb_to_lab on a million sRGB colors spread over the
    whole cube (every 17th code: 17 is prime to 256, so every value of every channel occurs), and on batches."""
    from chromapipe.color import rgb_uint8_to_lab, rgb_uint8_to_lab_fast

    code = torch.arange(0, 17 * 64 * 15420, 17, dtype=torch.int64)  # < 256**3
    rgb = torch.stack([code // 65536, (code // 256) % 256, code % 256]).to(torch.uint8).view(3, 64, 15420)
    fast = rgb_uint8_to_lab_fast(rgb)
    assert float((fast - rgb_uint8_to_lab(rgb)).abs().max()) < 3e-4
    batch = rgb.reshape(3, 4, 16, 15420).movedim(1, 0)  # (4, 3, 16, W)
    assert torch.equal(rgb_uint8_to_lab_fast(batch), fast.reshape(3, 4, 16, 15420).movedim(1, 0))
    ref = skimage.color.rgb2lab(rgb[:, :16].permute(1, 2, 0).numpy())
    assert np.abs(fast[:, :16].permute(1, 2, 0).numpy() - ref).max() < 3e-4
