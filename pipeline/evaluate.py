"""DVC stage `evaluate@<model>` (and `baseline`: `gray`): metrics + samples -> evaluation/<model>/."""

import sys

from _stage import run_stage

from chromapipe.evaluation.evaluate import evaluate
from chromapipe.metrics.record import GRAY
from chromapipe.models.registry import validate_models

if __name__ == "__main__":
    run_stage(lambda params: evaluate(params, sys.argv[1], ground_truth=sys.argv[1] == GRAY), check=validate_models)
