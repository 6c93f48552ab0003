# One command each: `make repro` (set up + run the whole pipeline on the embedded sample set),
# `make test` (set up + run the tests), `make lint` (ruff: lint + format check), `make ui` (browse the MLflow runs).
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup repro test test-slow test-all lint ui bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	$(BIN)/chromapipe weights fetch
	touch $(STAMP)

setup: $(STAMP)

# One local Ray instance serves every train stage (a cluster: set RAY_ADDRESS and run `dvc repro` directly).
repro: setup
	$(BIN)/chromapipe ray-local -- $(BIN)/dvc repro
	$(BIN)/dvc metrics show

test: setup
	$(PY) -m pytest -m "not slow" --durations=15

test-slow: setup
	$(PY) -m pytest -m slow

test-all: setup
	$(PY) -m pytest

# The rules and line length are in pyproject.toml ([tool.ruff]); CI runs this before the tests.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

ui: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000

bench: setup
	$(PY) bench/bench_train.py
	$(PY) bench/bench_colorize.py

clean:
	rm -rf .ray_runs data models registry evaluation reports/figures reports/index.html reports/results.md mlflow.db mlartifacts
