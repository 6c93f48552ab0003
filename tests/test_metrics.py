"""Metric suite: skimage agreement, LPIPS through the offline conversion, FID plumbing, colorfulness."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from chromapipe.metrics.colorfulness import colorfulness_per_image
from chromapipe.metrics.pixel import psnr_per_image, ssim_per_image
from chromapipe.metrics.suite import METRIC_KEYS, MetricSuite
from chromapipe.weights import WeightsUnavailable


def _t(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)


def _skimage(p: torch.Tensor, t: torch.Tensor) -> tuple[float, float]:
    x, y = p.permute(1, 2, 0).numpy(), t.permute(1, 2, 0).numpy()
    return (
        peak_signal_noise_ratio(y, x, data_range=255),
        structural_similarity(
            x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=2
        ),
    )


def _real_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """Real photos vs plausible 'colorizations': channel swaps, desaturation, tint (same sizes)."""
    astro = _t(data.astronaut()[100:228, 150:310])
    coffee = _t(data.coffee()[:128, :160])
    chelsea = _t(data.chelsea()[:128, :160])
    gray = astro.float().mean(0, keepdim=True).expand(3, -1, -1)
    preds = [
        astro[[1, 0, 2]],
        (0.5 * astro + 0.5 * gray).to(torch.uint8),
        coffee.flip(0),
        (chelsea.float() * torch.tensor([1.1, 0.9, 0.8]).view(3, 1, 1)).clamp(0, 255).to(torch.uint8),
    ]
    return torch.stack(preds), torch.stack([astro, astro, coffee, chelsea])


def test_psnr_ssim_match_skimage_on_random_and_real_pairs():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (3, 3, 37, 52), generator=g, dtype=torch.uint8)
    b = (a.int() + torch.randint(-25, 26, a.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    c = torch.randint(0, 256, a.shape, generator=g, dtype=torch.uint8)
    rp, rt = _real_pairs()
    for pred, target in ((a, b), (a, c), (rp, rt)):
        psnr, ssim = psnr_per_image(pred, target), ssim_per_image(pred, target)
        for i in range(pred.shape[0]):
            ref_psnr, ref_ssim = _skimage(pred[i], target[i])
            assert abs(psnr[i].item() - ref_psnr) < 1e-4
            assert abs(ssim[i].item() - ref_ssim) < 1e-4


def test_colorfulness_orders_gray_muted_saturated():
    h = w = 32
    hue = torch.linspace(0, 1, w).view(1, w).expand(h, w)
    sat_img = torch.stack([hue, 1 - hue, (hue * 3) % 1]) * 255
    gray_level = sat_img.mean(0, keepdim=True)
    muted = 0.7 * gray_level + 0.3 * sat_img
    imgs = torch.stack([gray_level.expand(3, h, w), muted, sat_img]).round().to(torch.uint8)
    cf = colorfulness_per_image(imgs)
    assert cf[0].item() == pytest.approx(0.0, abs=1e-9)
    assert cf[0] < cf[1] < cf[2]
    # a pure, uniform red has no spread: CF = 0.3 * |mean(rg, yb)| = 0.3 * sqrt(255² + 127.5²)
    red = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    red[:, 0] = 255
    assert colorfulness_per_image(red).item() == pytest.approx(0.3 * np.hypot(255, 127.5))


@pytest.fixture(scope="module")
def lpips_model():
    from chromapipe.metrics.lpips_offline import build_lpips

    try:
        return build_lpips("alex")[0]
    except WeightsUnavailable as exc:
        pytest.skip(f"real AlexNet backbone cannot be resolved here: {exc.reason}")


def test_lpips_identity_symmetry_and_blur_vs_noise(lpips_model):
    from chromapipe.metrics.lpips_offline import lpips_per_image

    x = _t(data.astronaut())[None]
    x = F.interpolate(x.float(), size=(192, 192), mode="area").round().to(torch.uint8)
    g = torch.Generator().manual_seed(0)
    noised = (x.float() + 4 * torch.randn(x.shape, generator=g)).clamp(0, 255).round().to(torch.uint8)
    k = torch.ones(3, 1, 7, 7) / 49
    blurred = F.conv2d(F.pad(x.float(), (3, 3, 3, 3), mode="replicate"), k, groups=3).round().to(torch.uint8)
    assert lpips_per_image(lpips_model, x, x).item() == pytest.approx(0.0, abs=1e-6)
    d_xn = lpips_per_image(lpips_model, x, noised).item()
    assert d_xn == pytest.approx(lpips_per_image(lpips_model, noised, x).item(), abs=1e-6)
    assert lpips_per_image(lpips_model, x, blurred).item() > d_xn > 0


def test_suite_without_inception_reports_fd_not_fid(monkeypatch):
    monkeypatch.delenv("CHROMAPIPE_ALLOW_DOWNLOAD", raising=False)
    from chromapipe.weights import resolver

    def missing(allow_download=None):
        raise WeightsUnavailable("inception_fid", "not found locally (test)")

    monkeypatch.setattr(resolver, "inception_weights_path", missing)
    pred, target = _real_pairs()
    with MetricSuite(device="cpu") as suite:
        suite.update(pred[:2], target[:2])
        suite.update(pred[2:], target[2:])
        report = suite.compute()
    assert set(report.metrics) == set(METRIC_KEYS)
    assert report.metrics["fid"] is None and "fid" in report.unavailable
    if "fd_effnetlite0" not in report.unavailable:
        assert report.metrics["fd_effnetlite0"] > 0
        d = report.details["fd_effnetlite0"]
        assert d["n_samples"] == 4 and d["low_sample_warning"] is True and "NOT FID" in d["implementation"]
    for key in ("psnr", "ssim", "cf", "cf_gt", "delta_cf"):
        assert isinstance(report.metrics[key], float)
        assert report.details[key]["n_samples"] == 4 and "mean over images" in report.details[key]["averaging"]
    assert report.metrics["delta_cf"] == pytest.approx(abs(report.metrics["cf"] - report.metrics["cf_gt"]))
    if "lpips" not in report.unavailable:
        assert report.details["lpips"]["sha256"] and report.details["lpips"]["net"] == "alex"
    json.dumps(report.to_dict())


def test_suite_without_metric_packages_reports_them_unavailable(monkeypatch):
    """A bare GPU image lacks lpips, efficientnet_lite_pytorch and torch_fidelity: the suite names the missing
    package for each metric it cannot compute and still computes the others (a None in sys.modules makes the
    import fail as for an absent package)."""
    from chromapipe.metrics import frechet, lpips_offline

    for module in ("lpips", "efficientnet_lite_pytorch", "torch_fidelity"):
        monkeypatch.setitem(sys.modules, module, None)
    lpips_offline._build_lpips.cache_clear()  # networks built by earlier tests would hide the imports
    frechet.build_effnet.cache_clear()
    pred, target = _real_pairs()
    with MetricSuite(device="cpu") as suite:
        suite.update(pred, target)
        report = suite.compute()
    for key, module in (("lpips", "lpips"), ("fd_effnetlite0", "efficientnet_lite_pytorch"), ("fid", "torch_fidelity")):
        assert report.metrics[key] is None and f"Python package {module} is not installed" in report.unavailable[key]
    assert all(isinstance(report.metrics[k], float) for k in ("psnr", "ssim", "cf", "cf_gt", "delta_cf"))


def test_identical_images_count_as_capped_psnr():
    pred, target = _real_pairs()
    with MetricSuite(fid=False) as suite:
        suite.update(target[:2], target[:2])
        suite.update(pred[2:], target[2:])
        report = suite.compute()
    per_image = psnr_per_image(pred[2:], target[2:]).tolist()
    assert report.metrics["psnr"] == pytest.approx((2 * 100.0 + sum(per_image)) / 4)
    assert report.details["psnr"]["n_identical"] == 2 and "psnr" not in report.unavailable
    json.dumps(report.to_dict(), allow_nan=False)


@pytest.fixture
def dummy_inception(tmp_path, monkeypatch) -> Path:
    """DUMMY weights: a random-init Inception exercises torch-fidelity's path only; never a real FID.

    For speed on 2 CPU cores the dummy network also sees 96x96 inputs instead of 299x299 (plumbing only).
    LPIPS and the FD proxy are skipped: only the FID path is under test where this is used.
    """
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    from chromapipe.metrics import frechet, lpips_offline
    from chromapipe.weights import resolver

    with monkeypatch.context() as m:  # build the architecture without any weights file
        m.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None)
        m.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
        torch.manual_seed(0)
        dummy_state = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).state_dict()
    monkeypatch.setattr(fe.FeatureExtractorInceptionV3, "INPUT_IMAGE_SIZE", 96)
    dummy_path = tmp_path / "DUMMY-random-inception.pth"
    torch.save(dummy_state, dummy_path)
    monkeypatch.setattr(
        resolver,
        "inception_weights_path",
        lambda allow_download=None: (
            dummy_path,
            {"path": str(dummy_path), "sha256": "DUMMY-not-pinned", "source": "test"},
        ),
    )

    def skipped(*a, **k):
        raise WeightsUnavailable("not-needed", "skipped in the FID plumbing test")

    monkeypatch.setattr(lpips_offline, "build_lpips", skipped)
    monkeypatch.setattr(frechet, "build_effnet", skipped)
    return dummy_path


def test_fid_plumbing_with_DUMMY_random_inception_weights(dummy_inception):
    g = torch.Generator().manual_seed(1)
    pred = torch.randint(0, 256, (3, 3, 32, 32), generator=g, dtype=torch.uint8)
    target = torch.randint(0, 256, (3, 3, 32, 32), generator=g, dtype=torch.uint8)
    with MetricSuite(device="cpu") as suite:
        suite.update(pred, target)
        report = suite.compute()
    assert report.metrics["fid"] is not None and np.isfinite(report.metrics["fid"])
    assert report.details["fid"]["n_samples"] == 3 and report.details["fid"]["low_sample_warning"] is True
    assert report.details["fid"]["weights"] == str(dummy_inception) and report.details["fid"]["device"] == "cpu"
    assert report.metrics["fd_effnetlite0"] is None and report.metrics["lpips"] is None


class _Images(torch.utils.data.Dataset):
    """uint8 images as the Dataset torch-fidelity's ``calculate_metrics`` takes."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def test_in_process_fid_equals_torch_fidelity_calculate_metrics(dummy_inception):
    """The suite's FID (torch-fidelity's network and distance, statistics from running sums over batches)
    equals ``torch_fidelity.calculate_metrics`` over the same images, which stores every feature and
    takes ``np.mean``/``np.cov``: to 1e-6 relative, a margin over what was measured (reports/benchmarks.md,
    "Test suite: …"; its mean is float32, ours float64).
    The DUMMY network's convolutions are scaled up (x2.5) so that its pool3 features are of order one, as a
    trained network's are, rather than vanishing through 40-odd randomly initialised layers."""
    import torch_fidelity

    state = torch.load(dummy_inception, weights_only=True)
    torch.save({k: v * 2.5 if k.endswith("conv.weight") else v for k, v in state.items()}, dummy_inception)

    g = torch.Generator().manual_seed(2)
    pred = torch.randint(0, 256, (10, 3, 32, 32), generator=g, dtype=torch.uint8)
    ramp = torch.linspace(0, 1, 32).view(1, 1, 1, 32)  # smooth, darker images: another distribution
    target = (ramp * torch.rand(10, 3, 1, 1, generator=g) * 160 + torch.rand(10, 3, 32, 32, generator=g) * 20).to(
        torch.uint8
    )
    with MetricSuite(device="cpu") as suite:
        for i in range(0, 10, 4):  # batches of 4, 4 and 2: the sums must not depend on the batching
            suite.update(pred[i : i + 4], target[i : i + 4])
        ours = suite.compute().metrics["fid"]
    reference = torch_fidelity.calculate_metrics(
        input1=_Images(pred),
        input2=_Images(target),
        fid=True,
        cuda=False,
        cache=False,
        verbose=False,
        feature_extractor_weights_path=str(dummy_inception),
        batch_size=10,
        save_cpu_ram=True,
    )["frechet_inception_distance"]
    assert reference > 1 and ours == pytest.approx(reference, rel=1e-6)


def test_rejects_non_uint8_and_shape_mismatch():
    with pytest.raises(TypeError):
        psnr_per_image(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16))
    with MetricSuite(fid=False) as suite, pytest.raises(ValueError):
        suite.update(torch.zeros(1, 3, 16, 16, dtype=torch.uint8), torch.zeros(1, 3, 16, 17, dtype=torch.uint8))


# -- the thesis' protocol: L*a*b* packed as a 3-channel tensor ---------------------------------------------------
def test_lab_packing_follows_the_thesis_scaling():
    from chromapipe.metrics.lab_packed import pack_lab

    L = torch.tensor([100.0, 50.0, 0.0]).view(3, 1, 1, 1)
    ab = torch.tensor([[127.0, -128.0], [0.0, 0.0], [63.5, -64.0]]).view(3, 2, 1, 1)
    packed = pack_lab(L, ab).flatten(1)
    torch.testing.assert_close(packed, torch.tensor([[1.0, 1.0, 0.0], [0.5, 0.5, 0.5], [0.0, 0.75, 0.25]]))


def test_lab_packed_psnr_is_one_value_over_the_set_and_identity_is_perfect():
    """lab_psnr: one PSNR from the MSE over every image (torchmetrics dim=None), not a mean of per-image
    PSNRs — the two differ when the images' errors differ, as here."""
    from chromapipe.color import rgb_uint8_to_lab
    from chromapipe.metrics.lab_packed import LabPackedSuite, pack_lab

    truth = rgb_uint8_to_lab(_real_pairs()[1])
    L, ab = truth[:, :1], truth[:, 1:]
    pred = torch.stack([ab[0] + 0.5, ab[1] * 0.0, ab[2] + 30.0, ab[3]])  # errors of very different sizes
    with LabPackedSuite(fid=False) as suite:
        suite.update(L[:2], pred[:2], ab[:2])  # two batches: accumulation must not depend on batching
        suite.update(L[2:], pred[2:], ab[2:])
        report = suite.compute()
    sq = (pack_lab(L, pred).double() - pack_lab(L, ab).double()).square()
    assert report.metrics["lab_psnr"] == pytest.approx(float(10 * torch.log10(1 / sq.mean())), abs=1e-3)
    per_image_mean = float((10 * torch.log10(1 / sq.flatten(1).mean(1)[:3])).mean())
    assert abs(report.metrics["lab_psnr"] - per_image_mean) > 1.0
    assert 0.3 < report.metrics["lab_ssim"] < 1.0 and report.metrics["lab_lpips_vgg"] > 0.01
    assert report.unavailable["lab_fid"].startswith("disabled") and report.details["lab_psnr"]["n_samples"] == 4
    with LabPackedSuite(fid=False) as suite:
        suite.update(L, ab, ab)
        same = suite.compute().metrics
    assert same["lab_ssim"] == pytest.approx(1.0, abs=1e-6) and same["lab_lpips_vgg"] < 1e-6
