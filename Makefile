# `make install` builds .venv with the CPU build of torch first (an unpinned torch pulls a
# multi-GB CUDA build), then samexport and its dependencies. `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Off this machine, point pip at the CPU wheels: make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

# ios_harness's Swift package: the platform-neutral core builds and its XCTest suite runs wherever a
# Swift toolchain is (Swift 6; the project's machines have one at /opt/swift). Required under CI.
SWIFT ?= $(shell command -v swift 2>/dev/null || ls /opt/swift/usr/bin/swift 2>/dev/null)

.PHONY: install test test-fast test-times swift-test lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

test: install swift-test
	$(BIN)/python -m pytest

# The fast tier: everything but the tests marked slow (full-size conversions and 1024 encoders).
test-fast: install swift-test
	$(BIN)/python -m pytest -m "not slow"

# The whole suite (or PYTEST_ARGS's selection) with every test's duration, the Swift suite's and the total
# written to a JSON file under benchmarks/results.
TEST_TIMES ?= benchmarks/results/linux-x86_64-2core/test_times.json
PYTEST_ARGS ?=
test-times: install
	@start=$$(date +%s); $(MAKE) --no-print-directory swift-test || exit $$?; \
	SAMEXPORT_SWIFT_SECONDS=$$(( $$(date +%s) - start )) SAMEXPORT_TEST_TIMES=$(TEST_TIMES) \
	SAMEXPORT_TEST_TIMES_COMMAND='make test-times PYTEST_ARGS=$(PYTEST_ARGS)' $(BIN)/python -m pytest $(PYTEST_ARGS)

# Warnings are errors: the core is kept warning-free in Swift 6 mode. The suite is XCTest alone.
swift-test:
ifeq ($(SWIFT),)
ifeq ($(CI),true)
	@echo "swift-test: no Swift toolchain (swift on PATH or /opt/swift/usr/bin/swift); CI requires one" >&2; exit 1
else
	@echo "swift-test: SKIPPED, no Swift toolchain found (install Swift 6 to build and test ios_harness)"
endif
else
	cd ios_harness && $(SWIFT) build -Xswiftc -warnings-as-errors && $(SWIFT) test -Xswiftc -warnings-as-errors --disable-swift-testing
endif

lint: install
	$(BIN)/python -m ruff check samexport tests benchmarks
	$(BIN)/python -m ruff format --check samexport tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache ios_harness/.build
