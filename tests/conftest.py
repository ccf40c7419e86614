"""Shared fixtures: checkpoints built from the parity fixtures and one set of exports several modules read.
Plain helpers live in helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import FIXTURE_FAMILIES, fixture_npz, require_parity_dir, write_fixture_checkpoint

# Tests that read the session's conversions (`exports`, `coreml_exports`: about 3 minutes of converting
# and checking before the first of them runs) are in the slow tier; `make test-fast` skips them.
SLOW_FIXTURES = {"exports", "coreml_exports"}


def pytest_configure(config):
    """A marker per registered export target (`pytest -m litert`), from the registry: a new target gets its
    marker without an edit here."""
    from samexport.export.target import targets

    for name, target in targets().items():
        config.addinivalue_line("markers", f"{name}: tests that export to or run {target.title}")


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def toy_exports(tmp_path_factory):
    """target -> (folder, manifest): the toy family (tests/toy_family.py) exported to that target once per
    session with `toy_exported`'s options. The toy is registered only while it exports: a module that reads
    the files holds `toy_registered()` itself."""
    from toy_family import toy_exported

    cache = {}

    def get(target: str):
        if target not in cache:
            with toy_exported(tmp_path_factory.mktemp(f"toy-{target}"), target) as exported:
                cache[target] = exported
        return cache[target]

    return get


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


# -- `make test-times`: per-test durations to a JSON file (SAMEXPORT_TEST_TIMES names it) ---------------
_TIMES: dict = {}
_STARTED: list = []


def pytest_sessionstart(session):
    import time

    _STARTED.append(time.time())


def pytest_runtest_logreport(report):
    entry = _TIMES.setdefault(report.nodeid, {"seconds": 0.0, "outcome": "passed"})
    entry["seconds"] += report.duration
    if report.failed:
        entry["outcome"] = "failed"
    elif report.skipped and entry["outcome"] == "passed":
        entry["outcome"] = "skipped"


def pytest_sessionfinish(session, exitstatus):
    import json
    import os
    import time

    path = os.environ.get("SAMEXPORT_TEST_TIMES")
    if not path or not _STARTED:
        return
    from samexport.provenance import machine, versions

    wall = time.time() - _STARTED[0]
    modules: dict = {}
    for nodeid, entry in _TIMES.items():
        module = nodeid.split("::")[0]
        modules[module] = modules.get(module, 0.0) + entry["seconds"]
    outcomes = [e["outcome"] for e in _TIMES.values()]
    document = {
        "command": os.environ.get("SAMEXPORT_TEST_TIMES_COMMAND", "pytest"),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "versions": versions(),
        "pytest_wall_seconds": round(wall, 1),
        "swift_test_seconds": int(os.environ.get("SAMEXPORT_SWIFT_SECONDS", 0)) or None,
        "tests": len(_TIMES),
        "outcomes": {o: outcomes.count(o) for o in sorted(set(outcomes))},
        "exit_status": int(exitstatus),
        "modules_seconds": {m: round(s, 2) for m, s in sorted(modules.items(), key=lambda kv: -kv[1])},
        "tests_seconds": {
            n: round(e["seconds"], 3) for n, e in sorted(_TIMES.items(), key=lambda kv: -kv[1]["seconds"])
        },
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(document, indent=1) + "\n")
