"""Where a result came from: package versions, the machine, file digests.

One description for export manifests, bench results and the scripts in benchmarks/.
"""

from __future__ import annotations

import hashlib
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Dict

from .platforms import cpu_model, thermal_state

# What every result depends on; each export target adds the packages its lowering and runner use when it
# registers (`export.target.register_target`, `ExportTarget.packages`).
PACKAGES = ["samexport", "torch", "numpy"]


def record_packages(*packages: str) -> None:
    """Add packages whose versions `versions()` reports (a target's, as it registers)."""
    PACKAGES.extend(p for p in packages if p not in PACKAGES)


def versions() -> Dict[str, str]:
    out = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def machine() -> Dict:
    """CPU, cores, RAM, OS and (where the OS reports it) thermal state."""
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None
    cpu = cpu_model()
    ram_text = f", {ram / 1024**3:.0f} GiB RAM" if ram else ""
    return {
        "description": f"{cpu}, {os.cpu_count()} cores{ram_text}, {platform.platform()}",
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(ram / 1024**3, 1) if ram else None,
        "os": platform.platform(),
        "processor": platform.machine(),
        "thermal_state": thermal_state() or "not reported by this OS",
    }


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
