"""Device profiles (chip, RAM, Neural Engine rate; one data file) and the memory budget each implies."""

from __future__ import annotations

import functools
import json
import math
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


# A child part needs about 90 MB before any model loads (Python, NumPy, onnxruntime); below this every
# part would be reported out of memory, which says nothing about the model.
MIN_MEMORY_LIMIT = 128 * 1024**2
# resource.setrlimit takes a C long; nothing measured here needs more than a petabyte
MAX_MEMORY_LIMIT = 1024**5


def parse_size(text: str) -> int:
    """'4G', '512M', '2.5GB', '1000000' -> bytes; at least MIN_MEMORY_LIMIT."""
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    units = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    try:
        number = float(value[:-1]) if value and value[-1] in units else float(value)
    except ValueError:
        raise UsageError(f"--memory-limit takes a size like 4G or 512M, got {text!r}") from None
    if not math.isfinite(number):
        raise UsageError(f"--memory-limit takes a finite size like 4G or 512M, got {text!r}")
    size = int(number * (units[value[-1]] if value[-1] in units else 1))
    if size > MAX_MEMORY_LIMIT:
        raise UsageError(
            f"--memory-limit {text!r} is more memory than any machine has (over "
            f"{MAX_MEMORY_LIMIT // 1024**4}T); leave it out for no limit"
        )
    if size < MIN_MEMORY_LIMIT:
        raise UsageError(
            f"--memory-limit {text!r} is below {MIN_MEMORY_LIMIT // 1024**2}M, the least a part needs "
            "before loading a model; pass a larger size, or leave it out for no limit"
        )
    return size
