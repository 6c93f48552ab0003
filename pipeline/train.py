"""DVC stage `train`: one Ray Train run for every model in params (or those named) -> models/<model>/generator.pt."""

import sys

from _stage import run_stage

from chromapipe.models.registry import validate_models
from chromapipe.training.run import train_models

if __name__ == "__main__":
    run_stage(lambda params: train_models(params, sys.argv[1:] or list(params.models)), check=validate_models)
