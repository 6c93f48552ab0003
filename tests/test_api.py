"""`from chromapipe import Colorizer`: the Python API gives the pixels `chromapipe colorize` writes, takes every kind
of image a notebook holds, says clearly what is wrong, and `import chromapipe` stays light."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from chromapipe import Colorizer
from chromapipe.cli import main as cli_main
from chromapipe.config import ModelConfig
from chromapipe.inference.io import InputError
from chromapipe.models.checkpoint import save_generator
from tests.conftest import REPO
from tests.images import photo, write_command_inputs
from tests.tiny_recipe import TinyPaletteRecipe, TinyRecipe


def generator(tmp_path: Path, recipe: type = TinyRecipe) -> Path:
    path = tmp_path / "gen" / f"{recipe.__name__}.pt"
    torch.manual_seed(0)
    save_generator(
        path, "tiny", ModelConfig(arch=recipe.arch, resolution=32, steps=1), recipe(None, {}, 32).build_generator()
    )
    return path


def test_import_stays_light() -> None:
    """Neither `import chromapipe` nor `from chromapipe import Colorizer` imports Ray or MLflow (the first not
    even torch): a fresh interpreter's sys.modules after each."""
    code = (
        "import sys, json\n"
        "import chromapipe\n"
        "first = sorted(m for m in ('torch', 'ray', 'mlflow') if m in sys.modules)\n"
        "from chromapipe import Colorizer\n"
        "second = sorted(m for m in ('ray', 'mlflow') if m in sys.modules)\n"
        "print(json.dumps([first, second, Colorizer.__module__]))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=True)
    assert json.loads(out.stdout.splitlines()[-1]) == [[], [], "chromapipe.inference.colorizer"]


def test_same_pixels_as_the_command(tmp_path: Path) -> None:
    """Every input kind the command reads, through the command (batched two at a time) and through the API (one
    at a time, from a path, a PIL image, an array): the same pixels."""
    ckpt = generator(tmp_path)
    src = tmp_path / "in"
    write_command_inputs(src)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the API returns it upright, as the command writes it
    Image.fromarray(photo(40, 64)).save(src / "rot.jpg", quality=95, exif=exif.tobytes())
    out = tmp_path / "out"
    assert cli_main(["colorize", "-q", str(src), "-o", str(out), "--checkpoint", str(ckpt), "--batch-size", "2"]) == 0

    colorizer = Colorizer.load(ckpt)
    for name in ("rgb.png", "gray.png", "rgba.png"):
        written = np.asarray(Image.open(out / name))
        assert np.array_equal(np.asarray(colorizer(src / name)), written), name
        with Image.open(src / name) as img:
            assert np.array_equal(np.asarray(colorizer(img)), written), name
        assert np.array_equal(colorizer(np.asarray(Image.open(src / name))), written), name
    from torchvision.io import ImageReadMode, decode_png, read_file

    def png16(path: Path) -> np.ndarray:
        return decode_png(read_file(str(path)), ImageReadMode.UNCHANGED).permute(1, 2, 0).numpy()

    as_array = colorizer(np.asarray(Image.open(src / "gray16.png")).astype(np.uint16))
    assert as_array.dtype == np.uint16  # 16 bits kept from an array
    # a batch of two and a batch of one differ in the network's last float bits (oneDNN's kernels depend on the
    # batch): invisible in 8 bits, one code in 65535 on 0.1 % of the values in 16; alone, the file is identical
    assert np.abs(as_array.astype(int) - png16(out / "gray16.png")).max() <= 1
    one = ["colorize", "-q", str(src / "gray16.png"), "-o", str(tmp_path / "one"), "--checkpoint", str(ckpt)]
    assert cli_main([*one, "--batch-size", "1"]) == 0
    assert np.array_equal(as_array, png16(tmp_path / "one" / "gray16.png"))
    upright = colorizer(src / "rot.jpg")
    assert upright.size == (40, 64)
    buffer = io.BytesIO()
    upright.save(buffer, format="JPEG", quality=95)  # the command's JPEG encoding of the same pixels
    assert np.array_equal(np.asarray(Image.open(buffer)), np.asarray(Image.open(out / "rot.jpg")))


def test_inputs_outputs_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = generator(tmp_path)
    colorizer = Colorizer.load(str(ckpt))
    assert (colorizer.name, colorizer.resolution, colorizer.has_palette) == ("tiny", 32, False)
    buffer = io.BytesIO()
    Image.fromarray(photo(20, 30)[..., 0]).save(buffer, format="PNG")
    from_bytes = colorizer(buffer.getvalue())
    assert isinstance(from_bytes, Image.Image) and from_bytes.size == (30, 20) and from_bytes.mode == "RGB"
    floats = colorizer(photo(20, 30).astype(np.float32) / 255)
    assert floats.dtype == np.uint16 and floats.shape == (20, 30, 3)
    exif = Image.Exif()
    exif[0x0112] = 8
    tagged = Image.open(io.BytesIO(_jpeg(photo(16, 24), exif)))
    assert colorizer(tagged).size == (16, 24) and tagged.getexif()[0x0112] == 8  # the caller's image untouched

    for bad, message in [
        (np.zeros((4, 4, 2), np.uint8), "array, got shape"),
        (np.zeros((4, 4), np.int32), "got int32"),
        (b"definitely not an image", "not an image"),
        (tmp_path / "missing.png", "no such file"),
    ]:
        with pytest.raises(InputError, match=message):
            colorizer(bad)
    with pytest.raises(ValueError, match="PalGAN-family"):
        colorizer(photo(8, 8), samples=2)
    monkeypatch.chdir(tmp_path)  # no params.yaml here: the defaults
    with pytest.raises(ValueError, match="no such file or directory"):
        Colorizer.load("nowhere/generator.pt")
    with pytest.raises(ValueError, match="models/pix2pix/generator.pt not found.*dvc repro"):
        Colorizer.load("pix2pix")
    (tmp_path / "junk").mkdir()
    with pytest.raises(ValueError, match="neither a generator file"):
        Colorizer.load(tmp_path / "junk")


def _jpeg(arr: np.ndarray, exif: Image.Exif) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(arr).save(buffer, format="JPEG", exif=exif.tobytes())
    return buffer.getvalue()


def test_palette_options(tmp_path: Path) -> None:
    colorizer = Colorizer.load(generator(tmp_path, TinyPaletteRecipe))
    gray = photo(24, 32)[..., 0]
    samples = colorizer(gray, samples=3, seed=7)
    assert isinstance(samples, list) and len(samples) == 3
    assert not np.array_equal(samples[0], samples[1])
    assert np.array_equal(samples[2], colorizer(gray, samples=3, seed=7)[2])  # seeded
    blue = np.zeros((16, 16, 3), np.uint8)
    blue[..., 2] = 220
    guided = colorizer(Image.fromarray(gray), reference=Image.fromarray(blue))
    plain = colorizer(Image.fromarray(gray))
    assert np.asarray(guided)[..., 2].mean() > np.asarray(plain)[..., 2].mean()
