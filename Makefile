# `make install` builds .venv with the CPU build of torch first (an unpinned torch pulls a
# multi-GB CUDA build), then samexport and its dependencies. `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Off this machine, point pip at the CPU wheels: make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

.PHONY: install test test-fast lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

test: install
	$(BIN)/python -m pytest

# The fast tier: everything but the tests marked slow (full-size conversions and 1024 encoders).
test-fast: install
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/python -m ruff check samexport tests benchmarks
	$(BIN)/python -m ruff format --check samexport tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
