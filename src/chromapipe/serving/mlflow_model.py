"""The logged MLflow model's code (MLflow's "models from code"): the file MLflow copies into the model and runs
when the model is loaded. Code instead of a pickled object: nothing is unpickled at load time, and the model
says in plain Python what it is — the project's :class:`~chromapipe.serving.pyfunc.ColorizerModel`."""

import mlflow

from chromapipe.serving.pyfunc import ColorizerModel

mlflow.models.set_model(ColorizerModel())
