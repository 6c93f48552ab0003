"""The palette histogram: bins and orientation, normalisation, smoothing, reference palettes, sampling."""

from __future__ import annotations

import pytest
import skimage.data
import torch

from chromapipe.models.palette import (
    AB_MAX,
    AB_MIN,
    BIN_WIDTH,
    bin_centers,
    palette_grid,
    palette_histogram,
    rgb_palette,
    sample_palettes,
)


def expected_bin(v: float) -> int:
    return min(15, max(0, int((v - AB_MIN) // BIN_WIDTH)))


@pytest.mark.parametrize(
    ("a", "b"), [(0.0, 0.0), (-100.0, 90.0), (45.0, -70.0), (200.0, -300.0), (AB_MIN, AB_MAX - 1e-3)]
)
def test_single_color_image_is_one_hot_in_its_bin(a: float, b: float) -> None:
    ab = torch.empty(1, 2, 8, 8)
    ab[:, 0], ab[:, 1] = a, b
    h = palette_histogram(ab)
    ia, ib = expected_bin(a), expected_bin(b)
    assert h.shape == (1, 256) and h.sum() == 1 and h[0, ia * 16 + ib] == 1
    assert palette_grid(h)[0, ia, ib] == 1  # rows = a* bins, columns = b* bins
    c = bin_centers()
    if AB_MIN <= a < AB_MAX:
        assert abs(float(c[ia]) - a) <= BIN_WIDTH / 2
    if AB_MIN <= b < AB_MAX:
        assert abs(float(c[ib]) - b) <= BIN_WIDTH / 2


def test_histograms_sum_to_one_weights_and_smoothing() -> None:
    from chromapipe.color import rgb_to_lab

    rgb = torch.from_numpy(skimage.data.coffee()).permute(2, 0, 1)[None].float() / 255
    lab = rgb_to_lab(rgb[..., ::4, ::4])
    h = palette_histogram(lab[:, 1:])
    assert h.shape == (1, 256) and torch.allclose(h.sum(1), torch.ones(1)) and (h > 0).sum() > 5
    assert torch.allclose(rgb_palette(rgb[..., ::4, ::4]), h, atol=1e-6)
    smooth = palette_histogram(lab[:, 1:], sigma=1.0)
    assert torch.allclose(smooth.sum(1), torch.ones(1)) and (smooth > 0).sum() > (h > 0).sum()
    # weights: only the left half counts -> the left half's histogram
    w = torch.zeros(1, 1, *lab.shape[-2:])
    w[..., : lab.shape[-1] // 2] = 1
    assert torch.allclose(
        palette_histogram(lab[:, 1:], weights=w), palette_histogram(lab[:, 1:, :, : lab.shape[-1] // 2]), atol=1e-6
    )
    assert torch.allclose(palette_histogram(lab[:, 1:], weights=torch.zeros_like(w)), torch.full((1, 256), 1 / 256))


def test_random_ab_histograms_sum_to_one() -> None:
    ab = torch.randn(3, 2, 16, 16) * 80
    assert torch.allclose(palette_histogram(ab).sum(1), torch.ones(3))


def test_sampled_palettes_are_distributions_near_the_input_and_repeatable() -> None:
    h = torch.zeros(2, 256)
    h[0, 10], h[0, 20], h[1, 100] = 0.7, 0.3, 1.0
    draws = sample_palettes(h, 4, generator=torch.Generator().manual_seed(3))
    assert draws.shape == (4, 2, 256) and torch.allclose(draws.sum(-1), torch.ones(4, 2), atol=1e-5)
    assert (draws[:, 0, 10] + draws[:, 0, 20]).min() > 0.8  # most mass stays on the likely bins
    assert not torch.allclose(draws[0], draws[1])  # diverse
    assert torch.equal(draws, sample_palettes(h, 4, generator=torch.Generator().manual_seed(3)))  # repeatable
    hot = sample_palettes(h[0], 8, generator=torch.Generator().manual_seed(3), temperature=3.0)
    assert hot.shape == (8, 256) and (hot[:, 10] + hot[:, 20]).mean() < (draws[:, 0, 10] + draws[:, 0, 20]).mean()
