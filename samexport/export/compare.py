"""Numeric comparison of an exported model's outputs with PyTorch's."""

from __future__ import annotations

from typing import Dict

import numpy as np


def compare(actual, reference) -> Dict[str, float]:
    """max_abs, rel (max_abs / max |ref|), PSNR in dB (peak max |ref|), cosine, NaN/Inf count."""
    a = np.asarray(actual, dtype=np.float64).reshape(-1)
    r = np.asarray(reference, dtype=np.float64).reshape(-1)
    if a.shape != r.shape:
        raise ValueError(f"shape mismatch: {np.shape(actual)} vs {np.shape(reference)}")
    non_finite = int((~np.isfinite(a)).sum())
    a = np.where(np.isfinite(a), a, 0.0)
    diff = a - r
    peak = float(np.abs(r).max())
    rms = float(np.sqrt(np.mean(diff**2)))
    denom = float(np.linalg.norm(a) * np.linalg.norm(r))
    return {
        "max_abs": float(np.abs(diff).max()),
        "rel": float(np.abs(diff).max()) / peak if peak else float("inf"),
        "psnr_db": float(20 * np.log10(peak / rms)) if rms > 0 else float("inf"),
        "cosine": float(a @ r / denom) if denom else 0.0,
        "non_finite": non_finite,
    }


def worst(results: Dict[str, Dict[str, float]]) -> Dict[str, float]:
    """The worst value of each metric across several comparisons."""
    return {
        "max_abs": max(r["max_abs"] for r in results.values()),
        "rel": max(r["rel"] for r in results.values()),
        "psnr_db": min(r["psnr_db"] for r in results.values()),
        "cosine": min(r["cosine"] for r in results.values()),
        "non_finite": sum(r["non_finite"] for r in results.values()),
    }
