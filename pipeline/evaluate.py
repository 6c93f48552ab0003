"""DVC stage `evaluate`: every model in params (or those named) and the gray baseline, each on its
evaluation sets -> evaluation/<model>/<set>/ and evaluation/summary/<model>.json; each (set, metric) is also
attached to the model's registered version (tags eval/<set>/<metric> and the protocol)."""

import sys

from _stage import run_stage

from chromapipe.config import Params, tracking_uri
from chromapipe.evaluation.evaluate import evaluate_all
from chromapipe.models.registry import validate_models
from chromapipe.serving.evaluations import attach_evaluation


def evaluate_and_attach(params: Params) -> None:
    records = evaluate_all(params, sys.argv[1:] or None)
    attach_evaluation(tracking_uri(params), records)


if __name__ == "__main__":
    run_stage(evaluate_and_attach, check=validate_models)
