"""The installed packages are inside the ranges pyproject.toml declares as tested (issue 12 item 19)."""

from __future__ import annotations

from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from helpers import ROOT

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the declared ranges are read from pyproject.toml

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
REQUIREMENTS = [Requirement(r) for r in PROJECT["dependencies"] + PROJECT["optional-dependencies"]["dev"]]


@pytest.mark.parametrize("requirement", REQUIREMENTS, ids=[r.name for r in REQUIREMENTS])
def test_installed_version_is_in_the_tested_range(requirement):
    installed = Version(metadata.version(requirement.name))
    release = Version(installed.public)  # torch's +cpu local version is the same release
    assert requirement.specifier.contains(release, prereleases=True), (
        f"{requirement.name} {installed} is outside the tested range {requirement.specifier} declared in "
        "pyproject.toml: install the tested set (make install, constraints.txt) or test this version and "
        "widen the range"
    )


def test_constraints_pin_the_declared_ranges():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip().lower()] = Version(version)
    for requirement in REQUIREMENTS:
        assert requirement.name.lower() in pins, f"constraints.txt does not pin {requirement.name}"
        assert requirement.specifier.contains(pins[requirement.name.lower()], prereleases=True), requirement
