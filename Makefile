# Both targets bootstrap .venv from nothing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	# litert-torch first: resolving it together with every extra makes pip backtrack for many minutes
	$(PY) -m pip install --quiet "litert-torch>=0.10"
	$(PY) -m pip install --quiet -e ".[dev,tflite,ray,tflm]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/chipfit check examples/digits.yaml
	rm -rf runs/demo
	$(VENV)/bin/chipfit run examples/digits.yaml --out runs/demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports  # layering: no import cycles; runtime without torch/optuna/onnx; cost without measure
	$(PY) -m pytest -q -n 2 --durations=15 --doctest-modules chipfit tests

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	$(PY) bench/profile.py
	$(PY) bench/search.py
	$(PY) bench/quality.py
	$(PY) bench/predictor.py

clean:
	rm -rf $(VENV) build *.egg-info
