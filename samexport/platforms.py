"""What this machine is: the one test for Apple silicon, and the CPU's name."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path


def is_macos() -> bool:
    return sys.platform == "darwin"


def is_apple_silicon() -> bool:
    """macOS on an arm64 Mac: where Core ML can compile and predict."""
    return is_macos() and platform.machine() == "arm64"


def cpu_model() -> str:
    if is_macos():
        out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True)
        return out.stdout.strip() or platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def thermal_state() -> str | None:
    if is_macos():
        out = subprocess.run(["pmset", "-g", "therm"], capture_output=True, text=True)
        return " ".join(out.stdout.split()) or None
    return None
