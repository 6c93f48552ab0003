"""DVC stage `train@<model>`: Ray Train run of one model -> models/<model>/generator.pt."""

import sys

from _stage import run_stage

from chromapipe.models.registry import validate_models
from chromapipe.training.run import train_model

if __name__ == "__main__":
    run_stage(lambda params: train_model(params, sys.argv[1]), check=validate_models)
