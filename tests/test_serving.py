"""MLflow models on a real SQLite store: a generator logged into its run as a pyfunc and registered as a version of
chromapipe-<model> (once per run), aliases moved by the pipeline and by `chromapipe promote`, evaluation numbers
on the version, `colorize --model-uri`, the pyfunc's answers to good and bad requests, and `mlflow models serve`
answering HTTP on 127.0.0.1.

Registration is tested on generator files logged into real MLflow runs here (seconds); the end-to-end path
through the train, register and evaluate stages is tests/test_pipeline_dvc.py's.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException
from PIL import Image

from chromapipe.cli import main as cli_main
from chromapipe.config import ModelConfig
from chromapipe.layout import (
    CANDIDATE_ALIAS,
    CONFIG_HASH_TAG,
    DATASET_TAG,
    GENERATOR_ARTIFACT_DIR,
    LOGGED_MODEL_TAG,
    MODEL_TAG,
    eval_metric,
    eval_protocol_tag,
)
from chromapipe.metrics.record import MetricsRecord
from chromapipe.models.checkpoint import save_generator
from chromapipe.serving.evaluations import attach_evaluation
from chromapipe.serving.registry import client_for, register_generator
from tests.conftest import REPO
from tests.images import photo
from tests.tiny_recipe import TinyPaletteRecipe, TinyRecipe

NAME = "chromapipe-tiny"


def png_bytes(arr: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(arr).save(buffer, format="PNG")
    return buffer.getvalue()


class Store:
    """A real MLflow SQLite store with runs that logged tiny generators, as the train stage leaves them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uri = f"sqlite:///{root / 'mlflow.db'}"
        self.client = client_for(self.uri)
        self.exp = self.client.create_experiment("chromapipe", artifact_location=str(root / "mlartifacts"))

    def trained_run(self, model: str, recipe: type = TinyRecipe, seed: int = 0) -> tuple[str, Path]:
        run_id = self.client.create_run(self.exp, tags={MODEL_TAG: model}).info.run_id
        cfg = ModelConfig(arch=recipe.arch, resolution=32, steps=2, dataset="sample")
        torch.manual_seed(seed)
        path = self.root / run_id / "generator.pt"
        save_generator(path, model, cfg, recipe(None, {}, 32).build_generator(), meta={"run_id": run_id, "steps": 2})
        self.client.log_artifact(run_id, str(path), artifact_path=GENERATOR_ARTIFACT_DIR)
        self.client.set_terminated(run_id)
        return run_id, path


@pytest.fixture
def tracking(store: Store, monkeypatch: pytest.MonkeyPatch) -> str:
    """MLflow's own loaders (``mlflow.pyfunc.load_model``, ``get_model_info``) read the store from the environment."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    return store.uri


def tags_for(model: str, config_hash: str) -> dict[str, str]:
    return {MODEL_TAG: model, CONFIG_HASH_TAG: config_hash, DATASET_TAG: "sample"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """One registered version of chromapipe-tiny (about 3 s: a pyfunc logged and registered)."""
    s = Store(tmp_path_factory.mktemp("registry"))
    run_id, path = s.trained_run("tiny")
    s.first = register_generator(s.uri, "tiny", run_id, "hash1", path, tags_for("tiny", "hash1"))
    s.first_generator = path
    return s


def test_a_run_is_logged_and_registered_once(store: Store, tracking: str) -> None:
    first = store.first
    assert first.new and first.version == 1 and first.registered_model == NAME
    version = store.client.get_model_version(NAME, "1")
    assert version.run_id == first.run_id and version.source == first.logged_model
    assert {k: version.tags[k] for k in (MODEL_TAG, CONFIG_HASH_TAG, DATASET_TAG)} == tags_for("tiny", "hash1")
    assert store.client.get_model_version_by_alias(NAME, CANDIDATE_ALIAS).version == 1
    model_id = store.client.get_run(first.run_id).data.tags[LOGGED_MODEL_TAG]
    assert first.logged_model == f"models:/{model_id}"
    # the registered source is an MLflow model with a signature: image bytes in, image bytes and size out
    from mlflow.models import get_model_info

    info = get_model_info(f"models:/{NAME}/1")
    assert [c["name"] for c in info.signature.inputs.to_dict()] == ["image"]
    assert [c["name"] for c in info.signature.outputs.to_dict()] == ["image", "width", "height", "format"]
    again = register_generator(
        store.uri, "tiny", first.run_id, "hash1", store.first_generator, tags_for("tiny", "hash1")
    )
    assert not again.new and again.version == 1  # a restored configuration adds no version
    assert len(store.client.search_model_versions(f"name = '{NAME}'")) == 1


def test_pyfunc_answers_good_and_bad_requests(store: Store, tracking: str) -> None:
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(f"models:/{NAME}@{CANDIDATE_ALIAS}")
    gray = photo(30, 44)[..., 0]
    out = model.predict(pd.DataFrame({"image": [png_bytes(gray), png_bytes(photo(20, 10))]}))
    assert list(out.columns) == ["image", "width", "height", "format"]
    assert out[["width", "height", "format"]].values.tolist() == [[44, 30, "png"], [10, 20, "png"]]
    with Image.open(io.BytesIO(out["image"][0])) as img:
        assert img.size == (44, 30) and img.mode == "RGB"
    with pytest.raises(MlflowException, match="row 0: not an image"):
        model.predict(pd.DataFrame({"image": [b"definitely not an image"]}))
    with pytest.raises(MlflowException, match="row 1: .*over this server's limit"):
        model._model_impl.python_model.colorizer.max_pixels = 500
        model.predict(pd.DataFrame({"image": [png_bytes(gray[:10, :10]), png_bytes(gray)]}))


def test_promote_and_colorize_by_alias(store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from chromapipe import Colorizer

    run2, path2 = store.trained_run("tiny", seed=1)
    second = register_generator(store.uri, "tiny", run2, "hash2", path2, tags_for("tiny", "hash2"))
    assert second.version == 2 and store.client.get_model_version_by_alias(NAME, CANDIDATE_ALIAS).version == 2

    uri = ["--tracking-uri", store.uri]
    assert cli_main(["promote", "tiny", "--version", "1", *uri]) == 0
    assert "chromapipe-tiny@champion -> version 1 (new alias)" in capsys.readouterr().out
    assert cli_main(["promote", "tiny", *uri]) == 0  # default: the @candidate version
    assert "@champion -> version 2 (was version 1)" in capsys.readouterr().out
    assert cli_main(["promote", "tiny", "--version", "9", *uri]) == 2
    assert "no version 9 (versions: [1, 2])" in capsys.readouterr().err
    assert cli_main(["promote", "nope", *uri]) == 2
    assert "chromapipe-nope: no such registered model" in capsys.readouterr().err

    Image.fromarray(photo(24, 36)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    assert (
        cli_main(
            ["colorize", "-q", str(tmp_path / "a.png"), "-o", str(out), "--model-uri", f"models:/{NAME}@champion", *uri]
        )
        == 0
    )
    by_alias = np.asarray(Image.open(out / "a.png"))
    assert np.array_equal(by_alias, np.asarray(Colorizer.load(path2)(tmp_path / "a.png")))  # version 2's generator
    assert np.array_equal(
        by_alias, np.asarray(Colorizer.load(f"models:/{NAME}@champion", tracking_uri=store.uri)(tmp_path / "a.png"))
    )
    assert (
        cli_main(
            ["colorize", "-q", str(tmp_path / "a.png"), "-o", str(out), "--model-uri", f"models:/{NAME}@nope", *uri]
        )
        == 2
    )
    assert "models:/chromapipe-tiny@nope" in capsys.readouterr().err


def test_evaluation_is_attached_to_the_version(store: Store) -> None:
    record = MetricsRecord(
        name="tiny",
        run_id=store.first.run_id,
        protocol={"dataset": "sample", "split": "test", "n_images": 8, "resolution": 64},
        metrics={"psnr": 21.5, "ssim": 0.9, "fid": None},
    )
    stale = eval_metric("old_set", "psnr")
    store.client.set_model_version_tag(NAME, "1", stale, "1.0")
    gray = MetricsRecord(name="gray", kind="baseline", protocol={"dataset": "sample"})
    assert attach_evaluation(store.uri, {"tiny": [record], "gray": [gray]}) == 1
    tags = store.client.get_model_version(NAME, "1").tags
    assert float(tags[eval_metric("sample", "psnr")]) == 21.5 and float(tags[eval_metric("sample", "n_images")]) == 8
    assert json.loads(tags[eval_protocol_tag("sample")])["split"] == "test"
    assert eval_metric("sample", "fid") not in tags and stale not in tags  # no number invented, none stale


def test_palette_model_takes_a_reference(store: Store, tracking: str) -> None:
    import mlflow.pyfunc

    s = store
    run_id, path = s.trained_run("tiny_palette", recipe=TinyPaletteRecipe)
    register_generator(s.uri, "tiny_palette", run_id, "h", path, tags_for("tiny_palette", "h"))
    model = mlflow.pyfunc.load_model("models:/chromapipe-tiny_palette/1")
    assert "reference" in [c["name"] for c in model.metadata.signature.inputs.to_dict()]
    blue = np.zeros((16, 16, 3), np.uint8)
    blue[..., 2] = 220
    gray = png_bytes(photo(20, 20)[..., 0])
    frame = pd.DataFrame({"image": [gray, gray], "reference": [None, png_bytes(blue)]})
    plain, guided = (np.asarray(Image.open(io.BytesIO(b))) for b in model.predict(frame)["image"])
    assert guided[..., 2].mean() > plain[..., 2].mean()  # the reference's blue


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


# about 8 s: the server process imports MLflow, torch and the model before it answers
def test_mlflow_models_serve_answers_http(store: Store) -> None:
    """`mlflow models serve -m models:/chromapipe-tiny@candidate --env-manager local` on a free local port: a gray
    PNG comes back colorized at its size; bad requests get a 4xx with a message and the server keeps serving."""
    port = _free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": store.uri,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),  # its uvicorn
        "CHROMAPIPE_MAX_PIXELS": "100000",
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [str(Path(sys.executable).with_name("mlflow")), "models", "serve", "-m", f"models:/{NAME}@{CANDIDATE_ALIAS}"]
    cmd += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            assert server.poll() is None, server.stdout.read().decode()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.time() < deadline, "the server did not answer /ping within 180 s"
            time.sleep(0.5)
        gray = photo(30, 44)[..., 0]
        encoded = base64.b64encode(png_bytes(gray)).decode()
        for payload in ({"dataframe_records": [{"image": encoded}]}, {"inputs": {"image": [encoded]}}):
            status, body = _post(f"{url}/invocations", payload)
            assert status == 200, body
            (answer,) = body["predictions"]
            with Image.open(io.BytesIO(base64.b64decode(answer["image"]))) as img:
                assert img.size == (44, 30) == (answer["width"], answer["height"]) and img.mode == "RGB"
        bad = [
            ({"inputs": {"image": [base64.b64encode(b"not an image").decode()]}}, "not an image"),
            (
                {"inputs": {"image": [base64.b64encode(png_bytes(photo(400, 400))).decode()]}},
                "over this server's limit",
            ),
            ({"inputs": {"picture": [base64.b64encode(png_bytes(gray)).decode()]}}, "image"),
        ]
        for payload, message in bad:
            status, body = _post(f"{url}/invocations", payload)
            assert 400 <= status < 500 and message in body.get("message", ""), (status, body)
        assert (
            _post(f"{url}/invocations", {"inputs": {"image": [base64.b64encode(png_bytes(gray)).decode()]}})[0] == 200
        )
    finally:
        _stop(server)


def _stop(server: subprocess.Popen) -> None:
    """The server's own process group (started with a new session): the CLI and the uvicorn it runs."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.wait(timeout=30)
            return
        except subprocess.TimeoutExpired:
            continue
