"""DVC stage `evaluate`: every model in params (or those named) and the gray baseline, each on its
evaluation sets -> evaluation/<model>/<set>/ and evaluation/scores/<model>.json."""

import sys

from _stage import run_stage

from chromapipe.evaluation.evaluate import evaluate_all
from chromapipe.models.registry import validate_models

if __name__ == "__main__":
    run_stage(lambda params: evaluate_all(params, sys.argv[1:] or None), check=validate_models)
