"""The generator as an MLflow model: a ``pyfunc`` that wraps the :class:`~chromapipe.inference.colorizer.Colorizer`.

Why a pyfunc and not a torch flavour: what a user sends is a photo, not a tensor. The preprocessing a
generator needs (decode, EXIF orientation, sRGB -> L*, the antialiased resize to the model's resolution)
and the postprocessing (a*b* upsampled and joined with the full-resolution L*, gamut mapping at constant
L*, encoding in the input's format with its metadata) are the Colorizer's; wrapping it gives ``mlflow
models serve`` and ``mlflow.pyfunc.load_model`` exactly what ``chromapipe colorize`` writes.

Request (one row per image; JSON carries the file's bytes base64-encoded)::

    POST /invocations  {"dataframe_records": [{"image": "<base64 of a PNG/JPEG/... file>"}]}
    -> {"predictions": [{"image": "<base64 of the colorized file>", "width": W, "height": H, "format": "png"}]}

(``{"inputs": {"image": [...]}}`` works too.) The answer is the file ``chromapipe colorize`` would write:
the input's size and format (PNG, JPEG, WebP, TIFF, BMP; others as PNG), its metadata where it still applies.

PalGAN-family models also take an optional ``reference`` column (a photo whose palette to use). A bad
request — not an image, an image over the pixel limit, a missing ``image`` field — is an MLflow
``INVALID_PARAMETER_VALUE`` (HTTP 400) naming the row and the reason; the server keeps serving.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema

from chromapipe.layout import ARCH_TAG, LOGGED_MODEL_GENERATOR, LOGGED_MODEL_NAME, MODEL_TAG

MODEL_CODE = Path(__file__).with_name("mlflow_model.py")  # what MLflow runs to load the model
IMAGE, REFERENCE = "image", "reference"  # the request's columns
WIDTH, HEIGHT, FORMAT = "width", "height", "format"  # the answer's, beside IMAGE
JPEG_QUALITY = "jpeg_quality"  # the one request parameter

#: the serving limit on an image's pixels (checked from its header, before decoding); 64 MP keeps a 6000x4000
#: photo (24 MP) well inside and bounds a request's memory at a few hundred MB. Environment overrides it.
SERVING_MAX_PIXELS = 64_000_000
MAX_PIXELS_ENV = "CHROMAPIPE_MAX_PIXELS"
_BASE64 = re.compile(rb"[A-Za-z0-9+/=\s]*")
DEVICE_ENV = "CHROMAPIPE_DEVICE"  # "auto" (the default: the GPU when there is one), "cpu", "cuda"


def signature(has_palette: bool) -> ModelSignature:
    """Input: the image file's bytes (and for palette models an optional reference photo); output: the
    colorized file's bytes, its size and format; parameter: the JPEG/WebP quality."""
    inputs = [ColSpec(DataType.binary, IMAGE)]
    if has_palette:
        inputs.append(ColSpec(DataType.binary, REFERENCE, required=False))
    outputs = [
        ColSpec(DataType.binary, IMAGE),
        ColSpec(DataType.long, WIDTH),
        ColSpec(DataType.long, HEIGHT),
        ColSpec(DataType.string, FORMAT),
    ]
    return ModelSignature(Schema(inputs), Schema(outputs), ParamSchema([ParamSpec(JPEG_QUALITY, DataType.long, 95)]))


def bad_request(message: str) -> MlflowException:
    """An error the scoring server answers with HTTP 400 and ``message``."""
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


class ColorizerModel(mlflow.pyfunc.PythonModel):
    """The pyfunc: loads the generator artifact into a Colorizer and answers one row per image."""

    def load_context(self, context: Any) -> None:
        from chromapipe.inference.colorizer import Colorizer

        limit = int(os.environ.get(MAX_PIXELS_ENV, SERVING_MAX_PIXELS))
        device = os.environ.get(DEVICE_ENV, "auto")
        self.colorizer = Colorizer.from_path(Path(context.artifacts[LOGGED_MODEL_GENERATOR]), device, limit)

    # a DataFrame hint: MLflow infers no schema from it (the signature given at logging time is the schema),
    # and any other hint, or none, draws a warning when the class is defined
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """One output row per input row (see the module docstring); a bad row fails the request with HTTP 400."""
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if IMAGE not in frame.columns:
            raise bad_request(f"the request has no {IMAGE!r} field (it has {list(frame.columns)})")
        quality = int((params or {}).get(JPEG_QUALITY, 95))
        if not 1 <= quality <= 100:
            raise bad_request(f"{JPEG_QUALITY} must be in 1..100, got {quality}")
        rows = [self._one(i, row, quality) for i, row in enumerate(frame.to_dict("records"))]
        return pd.DataFrame(rows, columns=[IMAGE, WIDTH, HEIGHT, FORMAT])

    def _one(self, i: int, row: dict[str, Any], quality: int) -> dict[str, Any]:
        from chromapipe.inference.io import InputError, TooLarge, encode_image
        from chromapipe.inference.source import UsageError

        data, reference = row.get(IMAGE), row.get(REFERENCE)
        for field, value in ((IMAGE, data), (REFERENCE, reference)):
            if _present(value) and not isinstance(value, (bytes, bytearray)):
                raise bad_request(f"row {i}: {field!r} must be an image file's bytes (base64 in JSON)")
        if not _present(data) or not data:
            raise bad_request(f"row {i}: {IMAGE!r} is empty")
        try:
            image = self._decode(bytes(data))
            reference = self._decode(bytes(reference)) if _present(reference) else None
            conditioning = self.colorizer.conditioning(reference=reference)
            (pixels,) = self.colorizer.colorize(image, conditioning)
            buffer = io.BytesIO()
            fmt = encode_image(buffer, pixels, image.format, image.metadata, quality, has_alpha=image.alpha is not None)
        except TooLarge as exc:
            raise bad_request(
                f"row {i}: the image is {exc.width}x{exc.height}, over this server's limit of {exc.limit} pixels "
                f"({MAX_PIXELS_ENV})"
            ) from None
        except (InputError, UsageError) as exc:
            raise bad_request(f"row {i}: {exc}") from None
        return {IMAGE: buffer.getvalue(), WIDTH: pixels.shape[1], HEIGHT: pixels.shape[0], FORMAT: fmt.lower()}

    def _decode(self, data: bytes) -> Any:
        """The image in ``data``; if those bytes are not an image but base64 text, the image it encodes. Why:
        MLflow base64-decodes binary columns for ``dataframe_split`` / ``dataframe_records`` requests but hands
        the base64 text of an ``inputs`` request through as bytes. A real image file is decoded first, so one
        that happens to be ASCII is never misread."""
        from chromapipe.inference.io import InputError, TooLarge

        try:
            return self.colorizer.decode(data)
        except TooLarge:
            raise
        except InputError:
            if not _BASE64.fullmatch(data[:4096]):
                raise
            try:
                decoded = base64.b64decode(data, validate=False)
            except binascii.Error:
                raise InputError("not an image Pillow can read (nor base64 of one)") from None
            return self.colorizer.decode(decoded)


def requirements() -> list[str]:
    """What the model needs beside this project's package (pinned to what logged it). Given explicitly:
    MLflow's inference of requirements loads the model in a subprocess, which costs the stage seconds per
    model and can only find what the project already pins."""
    from importlib.metadata import version

    import chromapipe

    packages = ("torch", "torchvision", "numpy", "pillow", "pandas", "mlflow", "PyYAML", "safetensors")
    return [f"chromapipe=={chromapipe.__version__}"] + [f"{p}=={version(p).split('+')[0]}" for p in packages]


def log_colorizer_model(generator_file: Path, info: dict[str, Any], has_palette: bool, metadata: dict[str, Any]):
    """Log the generator file as this pyfunc into the active MLflow run; returns MLflow's ``ModelInfo``."""
    with warnings.catch_warnings():  # type hints / input example: the signature is given explicitly instead
        warnings.filterwarnings("ignore", message=".*type hint.*", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*input example.*", category=UserWarning)
        return mlflow.pyfunc.log_model(
            name=LOGGED_MODEL_NAME,
            python_model=str(MODEL_CODE),
            artifacts={LOGGED_MODEL_GENERATOR: str(generator_file)},
            signature=signature(has_palette),
            pip_requirements=requirements(),
            metadata={"chromapipe": metadata},
            tags={MODEL_TAG: info["name"], ARCH_TAG: info["config"].arch},
        )
