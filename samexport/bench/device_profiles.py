"""Device profiles (chip, RAM, Neural Engine rate; one data file) and the memory budget each implies."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Dict

from ..errors import UsageError

DATA = Path(__file__).with_name("device_profiles.json")


@functools.lru_cache(maxsize=None)
def load() -> Dict:
    return json.loads(DATA.read_text())


def profile(key: str) -> Dict:
    devices = load()["devices"]
    if key not in devices:
        raise UsageError(f"unknown device profile {key!r}; choose one of: {', '.join(devices)}")
    return {"key": key, **devices[key]}


def budget_bytes(key: str) -> int:
    """The host-side memory budget of a device profile, by the stated rule in devices.json."""
    p = profile(key)
    return int(p["ram_gb"] * p["budget_fraction"] * 1024**3)


def parse_size(text: str) -> int:
    """'4G', '512M', '2.5GB', '1000000' -> bytes."""
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    units = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    try:
        if value and value[-1] in units:
            return int(float(value[:-1]) * units[value[-1]])
        return int(float(value))
    except ValueError:
        raise UsageError(f"--memory-limit takes a size like 4G or 512M, got {text!r}") from None
