"""The colorize device path (``--device cuda``): the same maths as the host path, run with torch ops on the
pixels' device, and nvJPEG decoding with its fallbacks.

The device path is written device-agnostically, so these tests run it on the CPU and compare it with the
host path code for code. The one difference is the cube root in L* (torch has none: the device path takes
the correctly rounded one, NumPy's float32 ``np.cbrt`` is up to one ulp off it); it moves a few pixels by
one code, never more — and with the host's cube root swapped in, the two paths agree exactly. Tests that
need CUDA (the real nvJPEG decode, the GPU's own float results) are skipped without one.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.io import ImageReadMode

from chromapipe.inference import colorizer, fullres
from chromapipe.inference import io as cio
from chromapipe.inference.fullres import DevicePixels
from tests.images import photo, write_command_inputs
from tests.test_colorize import ckpt, colorize, load_png16, load_upright, tiny_arch  # noqa: F401 - ckpt, tiny_arch: fixtures

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")

# Device path vs host path on these tests' images (strong, mostly out-of-gamut a*b*): codes differ by at
# most 1, on a fraction of the pixels that depends on the NumPy build's float32 cbrt (16-bit codes are 257x
# finer, so more of them differ). The bounds are the true worst case for any cbrt within one ulp of the
# correctly rounded one (NumPy's is, over all float32 in [1e-12, 1]): they cover the sum of the fractions
# that nudging the device path's cube root one ulp up, then down, on every pixel changes, since a mix of
# both changes at most their sum (the fractions measured with two NumPy builds, and the nudges:
# reports/benchmarks.md, "Test suite: slow tests' durations and the numerical agreement behind the
# tolerances"). Gray images take L* from the same table on both paths: exact.
MAX_CODE_DIFF = 1
FRACTION_8BIT, FRACTION_16BIT = 1e-4, 3e-2
# network input: L* in [0, 100] to a few float32 ulps (7.6e-6 each near 100)
NETWORK_L_ATOL = 4e-5


def rgb16(h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    return photo(h, w).astype(np.uint16) * 257 + rng.integers(0, 257, (h, w, 3)).astype(np.uint16)


def code_diff(a: np.ndarray, b: np.ndarray) -> tuple[int, float]:
    """(largest code difference, fraction of pixels with any difference) of two (H, W, C) images."""
    assert a.shape == b.shape and a.dtype == b.dtype
    d = np.abs(a.astype(np.int64) - b.astype(np.int64))
    return int(d.max()), float((d.max(-1) > 0).mean())


@pytest.fixture(scope="module")
def ab() -> torch.Tensor:
    return torch.randn(2, 8, 8, generator=torch.Generator().manual_seed(0)) * 40  # mostly out of gamut


CASES = {  # name -> (pixels, alpha, pad); plain RGB large enough for the rare differences to show
    "rgb": lambda: (photo(600, 900), None, False),
    "rgb-pad": lambda: (photo(300, 450), None, True),
    "rgba": lambda: (photo(300, 450), photo(300, 450, seed=3)[..., 0], False),
    "gray": lambda: (photo(300, 450)[..., 1], None, False),
    "gray-alpha-pad": lambda: (photo(300, 450)[..., 1], photo(300, 450, seed=3)[..., 0], True),
    "rgb16-alpha": lambda: (rgb16(300, 450), rgb16(300, 450)[..., 2], False),
    "gray16-pad": lambda: (rgb16(300, 450)[..., 0], None, True),
}


@pytest.mark.parametrize("case", CASES)
def test_device_render_matches_host_render(case: str, ab: torch.Tensor) -> None:
    px, alpha, pad = CASES[case]()
    host = fullres.render(px, ab, alpha, pad=pad)
    dev_px = DevicePixels.upload(px, "cpu")
    dev_alpha = DevicePixels.upload(alpha, "cpu") if alpha is not None else None
    for strip_rows in (None, 37):  # one strip (the default, at these sizes) and many uneven ones
        out = fullres.render(dev_px, ab, dev_alpha, strip_rows=strip_rows, pad=pad)
        worst, fraction = code_diff(host, out)
        print(f"{case} strips={strip_rows}: max {worst} code(s) on {fraction:.2e} of pixels")
        if px.ndim == 2:
            assert worst == 0, case
        else:
            assert worst <= MAX_CODE_DIFF and fraction <= (
                FRACTION_16BIT if px.dtype == np.uint16 else FRACTION_8BIT
            ), (case, worst, fraction)
        if host.shape[2] == 4:
            assert np.array_equal(host[..., 3], out[..., 3])  # alpha / opaque padding exactly


@pytest.mark.parametrize("kind", ["rgb", "gray", "rgb16"])
def test_device_network_L_matches_host(kind: str) -> None:
    px = {"rgb": photo(300, 700), "gray": photo(300, 700)[..., 0], "rgb16": rgb16(300, 700)}[kind]
    host, dev = fullres.network_L(px, 32), fullres.network_L(DevicePixels.upload(px, "cpu"), 32)
    assert dev.shape == host.shape == (1, 32, 32)
    if kind == "gray":
        assert torch.equal(host, dev)
    else:
        assert torch.allclose(host, dev, rtol=0, atol=NETWORK_L_ATOL)


def test_cube_root_is_the_only_difference(ab: torch.Tensor, monkeypatch: pytest.MonkeyPatch) -> None:
    """With NumPy's cube root swapped into the device path, it reproduces the host path exactly: every
    other step (tables, luminance sum, upsampling, gamut mapping, encoding) is the same float code."""
    monkeypatch.setattr(
        fullres, "_y_to_L_torch", lambda y: torch.from_numpy(fullres._y_to_L(y.numpy()).astype(np.float32))
    )
    small = photo(150, 200)
    for px, alpha, pad in (
        (small, small[..., 0], False),
        (small, None, True),
        (rgb16(150, 200), rgb16(150, 200)[..., 2], False),
    ):
        dev = DevicePixels.upload(px, "cpu")
        assert np.array_equal(
            fullres.render(px, ab, alpha, pad=pad), fullres.render(dev, ab, alpha, strip_rows=41, pad=pad)
        )
        assert torch.equal(fullres.network_L(px, 32), fullres.network_L(dev, 32))


def test_device_pixels_mirror_the_host_array() -> None:
    for arr in (photo(5, 7), photo(5, 7)[..., 0], rgb16(5, 7), rgb16(5, 7)[..., 1]):
        dev = DevicePixels.upload(arr, "cpu")
        assert dev.shape == arr.shape and dev.dtype == arr.dtype and dev.nbytes == arr.nbytes
        assert np.array_equal(dev.numpy(), arr) and dev.numpy().dtype == arr.dtype
        assert torch.equal(dev.codes(1, 4), torch.from_numpy(arr[1:4].astype(np.int32)))
        assert cio.wants_padding("JPEG", dev, None) == cio.wants_padding("JPEG", arr, None)
    with pytest.raises(TypeError):
        DevicePixels.upload(np.zeros((2, 2), np.float32), "cpu")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_tensor_matches_orient(orientation: int) -> None:
    for arr in (photo(5, 7), photo(5, 7)[..., 0]):
        got = cio.orient_tensor(torch.from_numpy(arr), orientation)
        assert got.is_contiguous() and np.array_equal(got.numpy(), cio.orient(arr, orientation))


# -- nvJPEG: when it applies, and falling back to Pillow ------------------------------------------------------
def _jpeg(path: Path, arr: np.ndarray, mode: str | None = None, orientation: int = 1) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    img = Image.fromarray(arr)
    (img.convert(mode) if mode else img).save(path, quality=95, exif=exif.tobytes())
    return path


def test_nvjpeg_mode(tmp_path: Path) -> None:
    cuda, cpu = torch.device("cuda"), torch.device("cpu")  # a device object needs no GPU
    rgb = _jpeg(tmp_path / "rgb.jpg", photo(20, 30))
    gray = _jpeg(tmp_path / "gray.jpg", photo(20, 30)[..., 0])
    cmyk = _jpeg(tmp_path / "cmyk.jpg", photo(20, 30), mode="CMYK")
    Image.fromarray(photo(20, 30)).save(tmp_path / "rgb.png")
    with Image.open(rgb) as img:
        assert cio.nvjpeg_mode(img, cuda) == ImageReadMode.RGB
        assert cio.nvjpeg_mode(img, cpu) is None and cio.nvjpeg_mode(img, None) is None  # the CPU never uses it
        img.info["adobe_transform"] = 0  # RGB-coded, not YCbCr: left to libjpeg
        assert cio.nvjpeg_mode(img, cuda) is None
    with Image.open(gray) as img:
        assert cio.nvjpeg_mode(img, cuda) == ImageReadMode.GRAY
    for other in (cmyk, tmp_path / "rgb.png"):
        with Image.open(other) as img:
            assert cio.nvjpeg_mode(img, cuda) is None, other.name


def _cpu_decode(data: torch.Tensor, mode: object, device: torch.device) -> torch.Tensor:
    """Stands in for nvJPEG on a machine without CUDA: libjpeg-turbo through torchvision, which decodes
    these files exactly as Pillow does."""
    from torchvision.io import decode_jpeg

    return decode_jpeg(data, mode=mode)


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
@pytest.mark.parametrize("gray", [False, True])
def test_nvjpeg_path_decodes_upright_device_pixels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, orientation: int, gray: bool
) -> None:
    arr = photo(20, 30)[..., 0] if gray else photo(20, 30)
    path = _jpeg(tmp_path / "a.jpg", arr, orientation=orientation)
    monkeypatch.setattr(cio, "_nvjpeg_decode", _cpu_decode)
    host = cio.read_image(path, 10**9)
    dev = cio.read_image(path, 10**9, device=torch.device("cuda"))
    assert host.decoder == "pil" and dev.decoder == "nvjpeg"
    assert isinstance(dev.pixels, DevicePixels) and dev.alpha is None
    assert np.array_equal(dev.pixels.numpy(), host.pixels) and dev.size == host.size
    assert dev.metadata == host.metadata  # header and metadata still come from Pillow


@pytest.mark.parametrize("failure", ["error", "wrong size"])
def test_nvjpeg_failure_falls_back_to_pillow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, failure: str
) -> None:
    path = _jpeg(tmp_path / "a.jpg", photo(20, 30), orientation=6)

    def broken(data: torch.Tensor, mode: object, device: torch.device) -> torch.Tensor:
        if failure == "error":
            raise RuntimeError("Unsupported marker type 0xc9")  # e.g. arithmetic coding
        return torch.zeros((3, 5, 5), dtype=torch.uint8)

    monkeypatch.setattr(cio, "_nvjpeg_decode", broken)
    with caplog.at_level(logging.DEBUG, logger="chromapipe.colorize"):
        got = cio.read_image(path, 10**9, device=torch.device("cuda"))
    assert got.decoder == "pil" and isinstance(got.pixels, np.ndarray)
    assert np.array_equal(got.pixels, cio.read_image(path, 10**9).pixels)
    assert any("decoding with Pillow" in r.getMessage() and r.levelno == logging.DEBUG for r in caplog.records)


def test_truncated_jpeg_fails_on_the_device_path_as_on_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decoder that tolerates truncation (the stand-in: Pillow with LOAD_TRUNCATED_IMAGES, which fills the
    missing rows; whether nvJPEG does so is not known here) never sees an incomplete stream: Pillow decides,
    and refuses it as on the CPU path."""
    whole = _jpeg(tmp_path / "whole.jpg", photo(64, 48), orientation=6)  # EXIF: markers before the scan
    data = whole.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) * 2 // 3])
    assert cio.jpeg_complete(data) and not cio.jpeg_complete(cut.read_bytes())

    def tolerant(data: torch.Tensor, mode: object, device: torch.device) -> torch.Tensor:
        import io

        from PIL import ImageFile

        with monkeypatch.context() as m:
            m.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
            with Image.open(io.BytesIO(data.numpy().tobytes())) as img:
                return torch.from_numpy(np.asarray(img.convert("RGB"))).permute(2, 0, 1).contiguous()

    assert tolerant(
        torch.frombuffer(bytearray(cut.read_bytes()), dtype=torch.uint8), None, torch.device("cpu")
    ).shape == (3, 64, 48)
    monkeypatch.setattr(cio, "_nvjpeg_decode", tolerant)
    with pytest.raises(cio.InputError, match="truncated"):
        cio.read_image(cut, 10**9)
    with pytest.raises(cio.InputError, match="truncated"):
        cio.read_image(cut, 10**9, device=torch.device("cuda"))
    assert cio.read_image(whole, 10**9, device=torch.device("cuda")).decoder == "nvjpeg"


def test_progressive_jpeg_is_complete(tmp_path: Path) -> None:
    """A progressive JPEG has many scans; the end marker follows the last one."""
    path = tmp_path / "p.jpg"
    Image.fromarray(photo(64, 48)).save(path, "JPEG", progressive=True, quality=90)
    data = path.read_bytes()
    assert data.count(b"\xff\xda") > 1 and cio.jpeg_complete(data)
    assert not cio.jpeg_complete(data[:-2]) and not cio.jpeg_complete(b"")


def test_to_device_uploads_host_pixels_once() -> None:
    img = cio.DecodedImage(pixels=photo(4, 6), alpha=photo(4, 6)[..., 0], format="PNG", metadata=cio.Metadata())
    on = img.to_device(torch.device("cpu"))
    assert isinstance(on.pixels, DevicePixels) and isinstance(on.alpha, DevicePixels)
    assert on.size == img.size and on.nbytes == img.nbytes
    assert on.to_device(torch.device("cpu")).pixels is on.pixels  # already there: not copied again


# -- the command on the device path ---------------------------------------------------------------------------
def test_command_device_path_matches_host_path(tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """The whole command with the device path forced on the CPU (and nvJPEG's place taken by the CPU
    decoder): the same files, the same pixels up to the cube-root bound above."""
    src = tmp_path / "in"
    rgb = write_command_inputs(src)
    _jpeg(src / "rot.jpg", rgb, orientation=6)
    args = ("--checkpoint", ckpt, "--batch-size", "2", "--device", "cpu")
    assert colorize(src, "-o", tmp_path / "host", *args) == 0

    monkeypatch.setattr(colorizer, "uses_device_path", lambda device: True)
    monkeypatch.setattr(
        cio,
        "nvjpeg_mode",
        lambda img, device: ImageReadMode.RGB if img.format == "JPEG" and img.mode == "RGB" else None,
    )
    monkeypatch.setattr(cio, "_nvjpeg_decode", _cpu_decode)
    assert colorize(src, "-o", tmp_path / "dev", *args) == 0

    assert sorted(p.name for p in (tmp_path / "dev").iterdir()) == sorted(p.name for p in (tmp_path / "host").iterdir())
    for name in ("rgb.png", "gray.png", "rgba.png"):
        worst, fraction = code_diff(load_upright(tmp_path / "host" / name), load_upright(tmp_path / "dev" / name))
        assert worst <= MAX_CODE_DIFF and fraction <= 1 / 3150, (name, worst, fraction)  # one pixel at most
    assert code_diff(load_png16(tmp_path / "host" / "gray16.png"), load_png16(tmp_path / "dev" / "gray16.png"))[0] == 0
    host_jpg, dev_jpg = load_upright(tmp_path / "host" / "rot.jpg"), load_upright(tmp_path / "dev" / "rot.jpg")
    assert host_jpg.shape == dev_jpg.shape == (70, 45, 3)
    assert np.abs(host_jpg.astype(int) - dev_jpg).mean() < 0.05  # re-encoded: a one-code change spreads a little


# -- on a real GPU -------------------------------------------------------------------------------------------
@needs_cuda
@pytest.mark.parametrize("case", ["rgb-pad", "rgba", "gray", "rgb16-alpha"])
def test_cuda_render_close_to_host(case: str, ab: torch.Tensor) -> None:
    """On the GPU its own pow/exp/interpolation kernels join the cube root (the fractions seen on an H200:
    reports/benchmarks.md, "Test suite: …"): still one code at most."""
    px, alpha, pad = CASES[case]()
    host = fullres.render(px, ab, alpha, pad=pad)
    out = fullres.render(DevicePixels.upload(px, "cuda"), ab.cuda(), alpha, pad=pad)
    worst, fraction = code_diff(host, out)
    print(f"cuda {case}: max {worst} code(s) on {fraction:.2e} of pixels")
    assert worst <= MAX_CODE_DIFF and fraction <= (5e-2 if px.dtype == np.uint16 else 1e-3), (case, worst, fraction)
    L_host, L_dev = fullres.network_L(px, 64), fullres.network_L(DevicePixels.upload(px, "cuda"), 64)
    assert L_dev.is_cuda and torch.allclose(L_host, L_dev.cpu(), rtol=0, atol=1e-4)  # H200: reports/benchmarks.md


@needs_cuda
@pytest.mark.parametrize("gray", [False, True])
def test_real_nvjpeg_close_to_pillow(tmp_path: Path, gray: bool) -> None:
    """nvJPEG's chroma upsampling is not libjpeg-turbo's "fancy" one: close, not equal (on an H200:
    reports/benchmarks.md, "Test suite: …"; gray, with no chroma, identical)."""
    arr = photo(480, 640)[..., 0] if gray else photo(480, 640)
    path = _jpeg(tmp_path / "a.jpg", arr, orientation=6)
    host, dev = cio.read_image(path, 10**9), cio.read_image(path, 10**9, device=torch.device("cuda"))
    assert dev.decoder == "nvjpeg" and dev.pixels.device.type == "cuda"
    d = np.abs(dev.pixels.numpy().astype(int) - host.pixels)
    print(f"nvJPEG vs Pillow ({'gray' if gray else 'rgb'}): max {d.max()}, mean {d.mean():.3f}")
    assert d.shape == host.pixels.shape and d.mean() < 1.0 and d.max() <= 16


@needs_cuda
def test_real_nvjpeg_on_a_truncated_jpeg(tmp_path: Path) -> None:
    """What nvJPEG itself does with a truncated file is printed (for the record); colorize's verdict is the
    CPU path's either way, because the stream is checked before nvJPEG sees it."""
    whole = _jpeg(tmp_path / "whole.jpg", photo(480, 640), orientation=1)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    try:
        out = cio._nvjpeg_decode(
            torch.frombuffer(bytearray(cut.read_bytes()), dtype=torch.uint8), ImageReadMode.RGB, torch.device("cuda")
        )
        print(f"nvJPEG decoded the truncated file: {tuple(out.shape)}")
    except RuntimeError as exc:
        print(f"nvJPEG refused the truncated file: {exc}")
    with pytest.raises(cio.InputError, match="truncated"):
        cio.read_image(cut, 10**9, device=torch.device("cuda"))
