"""Latency statistics as the standard benchmark tools report them."""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np


def summarize(samples_ms: Sequence[float]) -> Dict[str, float]:
    """n, median, p90, min, max, mean, std (population) of samples in milliseconds."""
    if len(samples_ms) == 0:
        raise ValueError("no samples to summarize")
    values = np.asarray(samples_ms, dtype=np.float64)
    return {
        "n": int(values.size),
        "median_ms": float(np.median(values)),
        "p90_ms": float(np.percentile(values, 90)),
        "min_ms": float(values.min()),
        "max_ms": float(values.max()),
        "mean_ms": float(values.mean()),
        "std_ms": float(values.std()),
    }
