"""Trained generators for people outside this repository: MLflow models in the Model Registry, HTTP serving
through ``mlflow models serve``, and exports (ONNX, safetensors) with a model card.

Everything here sits on top of :mod:`chromapipe.inference` (the Colorizer does the work; this package only
packages it): ``pyfunc`` (the MLflow model), ``registry`` (log, register, alias, attach evaluations),
``promote`` (an alias to a version) and ``export`` (ONNX, safetensors), ``onnx_export`` and ``modelcard``.
"""
