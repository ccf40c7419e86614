"""The code style is enforced, not suggested: ruff lint rules and formatting, configured in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import ROOT

PATHS = ["samexport", "tests", "benchmarks"]


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff(command):
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, *PATHS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
