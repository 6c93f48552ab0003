"""Export a trained generator for people without this repository's MLflow store or params: a directory with
``model.safetensors`` or ``model.onnx`` (checked against torch before it counts as written), ``config.json``
and a model card (``README.md``). ``chromapipe export`` (:mod:`chromapipe.commands.export`) says what each holds.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

FORMATS = ("onnx", "safetensors")
ONNX_FORMAT = "chromapipe-onnx/1"
ONNX_FILE = "model.onnx"
MODEL_CARD = "README.md"

log = logging.getLogger(__name__)


def evaluation_records(
    name: str, run_id: str | None, params_path: str | None, tracking: str | None
) -> list[dict[str, Any]]:
    """The evaluation records of *this* generator (its training run): the project's ``evaluation/<name>/``
    when its records name that run, else the ones the evaluate stage logged into the run. Empty when there
    are none (the card then says so)."""
    if not run_id:
        return []
    from chromapipe.inference.source import UsageError, project_params
    from chromapipe.layout import METRICS_FILE
    from chromapipe.metrics.record import MetricsRecord

    try:
        params = project_params(params_path)
    except UsageError:
        params = None
    if params is not None:
        local = []
        for metrics in sorted(params.layout.evaluation.glob(f"{name}/*/{METRICS_FILE}")):
            try:
                record = MetricsRecord.read(metrics.parent)
            except (OSError, ValueError):
                continue
            if record.run_id == run_id:
                local.append(record.to_json())
        if local:
            return local
    return _run_records(run_id, tracking or (_uri(params) if params is not None else None))


def _uri(params: Any) -> str:
    from chromapipe.config import tracking_uri

    return tracking_uri(params)


def _run_records(run_id: str, uri: str | None) -> list[dict[str, Any]]:
    """``evaluation/<set>/metrics.json`` artifacts of the run, where the store has the run."""
    if uri is None:
        return []
    import mlflow
    from mlflow.tracking import MlflowClient

    from chromapipe.layout import EVALUATION_ARTIFACT_DIR, METRICS_FILE

    try:
        client = MlflowClient(uri)
        sets = [a.path for a in client.list_artifacts(run_id, EVALUATION_ARTIFACT_DIR) if a.is_dir]
        records = []
        for directory in sorted(sets):
            text = mlflow.artifacts.load_text(f"runs:/{run_id}/{directory}/{METRICS_FILE}")
            records.append(json.loads(text))
        return records
    except Exception as exc:  # noqa: BLE001 - no store, no run, no artifact: the card says there is no record
        log.info("no evaluation records from MLflow run %s (%s: %s)", run_id, type(exc).__name__, exc)
        return []


def _sha256(path: Path) -> str:
    from chromapipe.hashing import sha256_file

    return sha256_file(path)


def export(
    source: str,
    fmt: str,
    out: Path,
    *,
    tracking: str | None = None,
    params_path: str | None = None,
    opset: int | None = None,
) -> dict[str, Any]:
    """Export ``source`` as ``fmt`` into the directory ``out``; returns what was written (file -> sha256, and
    the ONNX check's record)."""
    from chromapipe.config import to_dict
    from chromapipe.inference.colorizer import Colorizer
    from chromapipe.models.base import unwrap
    from chromapipe.models.portable import CONFIG_FILE, WEIGHTS_FILE, save_portable
    from chromapipe.serving.modelcard import model_card
    from chromapipe.training.export import preprocessing_spec

    colorizer = Colorizer.load(source, "cpu", tracking_uri=tracking, params=params_path)
    info, cfg = colorizer.info, colorizer.config
    meta = dict(info.get("meta", {}))
    preprocessing = preprocessing_spec(cfg, meta.get("describe", {}))
    records = evaluation_records(info["name"], meta.get("run_id"), params_path, tracking)
    facts = {"meta": meta, "preprocessing": preprocessing, "evaluation": records, "exported_from": str(source)}
    out.mkdir(parents=True, exist_ok=True)
    parity = None
    if fmt == "safetensors":
        save_portable(out, info["name"], cfg, unwrap(colorizer.G).state_dict(), facts)
        written = [WEIGHTS_FILE, CONFIG_FILE]
        usage = [
            "```python",
            "from PIL import Image",
            "from chromapipe import Colorizer          # pip install chromapipe (this project)",
            "",
            'colorizer = Colorizer.load("path/to/this/directory")',
            'colorizer(Image.open("photo.jpg")).save("photo-color.jpg")   # full resolution, L* kept',
            "```",
        ]
    elif fmt == "onnx":
        from chromapipe.serving.onnx_export import check_parity, export_onnx

        exported = export_onnx(colorizer.recipe, colorizer.G, out / ONNX_FILE, **({"opset": opset} if opset else {}))
        parity = check_parity(colorizer.recipe, colorizer.G, out / ONNX_FILE)
        config = {"format": ONNX_FORMAT, "name": info["name"], "config": to_dict(cfg), "onnx": exported}
        config |= {"parity": parity, **facts}
        (out / CONFIG_FILE).write_text(json.dumps(config, indent=1, default=str), encoding="utf-8")
        written = [ONNX_FILE, CONFIG_FILE]
        R = cfg.resolution
        usage = [
            "```python",
            "import onnxruntime as ort",
            "",
            'session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])',
            f"# L: (batch, 1, {R}, {R}) float32, CIE L* in [0, 100] of the photo resized to {R}x{R} (antialiased)",
            'ab = session.run(None, {"L": L})[0]   # (batch, 2, R, R) float32: a*b* in Lab units',
            "```",
            "",
            "The graph works at the model's resolution. For a full-resolution photo, upsample `ab` bilinearly to "
            "the photo's size and join it with the photo's own L\\* (then convert L\\*a\\*b\\* to sRGB): this is "
            "what chromapipe's `Colorizer` does around the same computation.",
        ]
    else:
        raise ValueError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    files = {name: _sha256(out / name) for name in written}
    card = model_card(info, to_dict(cfg), preprocessing, records, files, usage, parity)
    (out / MODEL_CARD).write_text(card, encoding="utf-8")
    return {"directory": str(out), "files": files, "parity": parity, "evaluation_sets": len(records)}
