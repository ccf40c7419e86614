"""Shared fixtures: checkpoints built from the parity fixtures and one set of exports several modules read.
Plain helpers live in helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import FIXTURE_FAMILIES, fixture_npz, require_parity_dir, write_fixture_checkpoint

# Tests that read the session's conversions (`exports`, `coreml_exports`: about 3 minutes of converting
# and checking before the first of them runs) are in the slow tier; `make test-fast` skips them.
SLOW_FIXTURES = {"exports", "coreml_exports"}


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    return require_parity_dir()


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("checkpoints")


@pytest.fixture(scope="session")
def fixture_checkpoint(checkpoint_dir):
    """name -> path of that model's fixture checkpoint (written once per session)."""
    cache = {}

    def get(name: str) -> Path:
        if name not in cache:
            family = FIXTURE_FAMILIES[name]
            salt = str(fixture_npz(family)["salt"])
            cache[name] = write_fixture_checkpoint(family, checkpoint_dir / f"{family}.pt", salt)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    """One conversion per family that several test modules read: tinyvit and efficientsam_ti to ONNX, Core
    ML and Core AI (LiteRT has its own module: tests/test_litert.py), repvit to ONNX, all with the default
    (parity fill) weights and convert's own checks.
    Returns (folder, {name: manifest})."""
    from samexport.export.convert import convert
    from samexport.export.options import ConvertOptions

    out = tmp_path_factory.mktemp("exports")
    manifests = {}
    apple_and_onnx = "onnx,coreml,coreai"
    for name, target in (
        ("tinyvit", apple_and_onnx),
        ("repvit", "onnx"),
        ("efficientsam_ti", apple_and_onnx),
    ):
        manifests[name] = convert(ConvertOptions(encoder=name, target=target, output_dir=out), quiet=True)
    return out, manifests


@pytest.fixture
def toy():
    """The toy three-token family and its model `toy3` (tests/toy_family.py), registered for one test."""
    from toy_family import toy_registered

    with toy_registered() as spec:
        yield spec
