"""The golden files the Swift harness tests read are exactly what Python computes now (issue 13 item 17):
neither side can drift without a test failing (this one here, GoldenFixtureTests.swift on a Mac)."""

from __future__ import annotations

import json

import harness_golden
import pytest

FILES = harness_golden.fixtures()


@pytest.mark.parametrize("name", sorted(FILES))
def test_fixture_is_what_python_produces(name):
    path = harness_golden.FIXTURES / name
    assert path.is_file(), f"{path} is missing: run `python tests/harness_golden.py`"
    assert path.read_text() == FILES[name], (
        f"{name} differs from what Python computes: regenerate it deliberately"
    )


def test_the_fixture_set_is_complete_and_read_by_swift():
    on_disk = {p.name for p in harness_golden.FIXTURES.iterdir()}
    assert on_disk == set(FILES)
    swift = (
        harness_golden.ROOT / "ios_harness/Tests/SAMHarnessCoreTests/GoldenFixtureTests.swift"
    ).read_text()
    for name in (
        "contract_geometry",
        "prompt_tokens",
        "mask_postprocessing",
        "latency_stats",
        "breadcrumb",
        "result",
        "panoptic_fusion",
    ):
        assert f'"{name}"' in swift, name
    package = (harness_golden.ROOT / "ios_harness/Package.swift").read_text()
    assert 'resources: [.copy("Fixtures")]' in package


def test_python_consumers_read_the_device_fixtures():
    """The devicectl listing and the JetsamEvent report are read by the driver; their parses are golden."""
    from samexport.bench.ios import parse_devicectl
    from samexport.bench.jetsam import kill_of, parse_report

    expected = json.loads(FILES["python_expectations.json"])
    devices = json.loads((harness_golden.FIXTURES / "devicectl_devices.json").read_text())
    assert parse_devicectl(devices) == expected["devicectl"]
    report = parse_report((harness_golden.FIXTURES / "JetsamEvent-2026-11-28-100000.ips").read_text())
    assert kill_of(report, file="JetsamEvent-2026-11-28-100000.ips") == expected["jetsam"]
    assert (
        expected["jetsam"]["footprint_mb"] == 1400.0 and expected["devicectl"][0]["udid"] == "00008101-000A"
    )


def test_the_result_fixture_is_a_result_the_reports_read(tmp_path):
    from samexport.bench import report
    from samexport.bench.orchestrate import load_results

    data = load_results(harness_golden.FIXTURES / "result.json")
    markdown = report.to_markdown(data)
    assert "peak phys_footprint MB" in markdown and "| 90 |" in markdown and "| oom |" in markdown
