# Both targets bootstrap .venv from nothing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean farm

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

# The board farm without boards: Debian's Arm GNU toolchain and QEMU (tests/firmware/). Installed with apt-get
# as root (about 2 minutes, once); where that cannot happen, it says why and the firmware tests skip with a reason.
FARM_PKGS := gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm

farm:
	@if command -v arm-none-eabi-g++ >/dev/null 2>&1 && command -v qemu-system-arm >/dev/null 2>&1 \
	    && test -f /usr/lib/arm-none-eabi/newlib/thumb/v7e-m+fp/hard/librdimon.a; then \
	  echo "farm: Arm GNU toolchain and QEMU present"; \
	elif [ "$$(id -u)" != 0 ]; then \
	  echo "farm: not root, cannot apt-get install $(FARM_PKGS); the firmware tests will skip (run 'sudo make farm')"; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	  echo "farm: no apt-get on this machine; install $(FARM_PKGS) (or the Arm GNU toolchain and qemu-system-arm) by hand; the firmware tests will skip"; \
	else \
	  echo "farm: apt-get install $(FARM_PKGS) (about 2 minutes, once)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  timeout 900 apt-get update -qq && timeout 1200 apt-get install -y -qq --no-install-recommends $(FARM_PKGS) >/dev/null \
	    || { echo "farm: apt-get failed (offline?); the firmware tests will skip"; exit 1; }; \
	fi

test: $(STAMP)
	-@$(MAKE) --no-print-directory farm  # a failed install is not a failed test run: those tests skip with a reason
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
