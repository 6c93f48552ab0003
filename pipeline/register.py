"""DVC stage `register`: each trained generator as an MLflow model (a pyfunc in its training run), registered as a
version of chromapipe-<model> with @candidate on it -> registry/<model>.json."""

import os
import sys

from _stage import run_stage

from chromapipe.models.registry import validate_models
from chromapipe.serving.registry import register_project

if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per copied file, in a log
    run_stage(lambda params: register_project(params, sys.argv[1:] or None), check=validate_models)
