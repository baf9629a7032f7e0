# Two entry points for a fresh machine; each creates .venv by itself when it is missing.
#   make quickstart   the main job on the embedded default (local Ray, CPU, offline)
#   make test         the test suite, every tier (what CI runs: .ci/run)
#   make test-fast    the unit tier: no Ray cluster, no slow or GPU tests (a few minutes on 2 cores)
# The CPU install pins torch==2.13.0 (any other version pulls a multi-GB CUDA build);
# on a GPU machine use its own torch: make install TORCH_SPEC=torch

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.mathdistill-installed

.PHONY: install quickstart test test-fast clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,hub]'
	touch $(STAMP)

quickstart: $(STAMP)
	$(BIN)/mathdistill run configs/quickstart.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q -ra

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -ra -m "not ray and not slow and not gpu" --timeout=120

clean:
	rm -rf $(VENV) runs .pytest_cache
