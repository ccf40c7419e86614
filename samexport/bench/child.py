"""Run one model part in a child process under a memory limit and classify the outcome.

The limit is RLIMIT_DATA (heap and private mappings; Linux counts mmap in it since 4.7), which
tracks what a model allocates far better than RLIMIT_AS, whose virtual reservations (thread
stacks, allocator arenas) say little about memory use. A child that cannot allocate dies or
raises; the parent reports `oom` (with its evidence) and goes on.
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
import tempfile
from typing import Dict, Optional

from .stats import summarize

OOM_MARKERS = ("MemoryError", "bad_alloc", "Failed to allocate", "out of memory", "Cannot allocate memory")


def _limit(limit_bytes: Optional[int]):
    if limit_bytes is None:
        return None

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (limit_bytes, limit_bytes))

    return apply


def run_part(job: Dict, limit_bytes: Optional[int] = None, timeout_s: float = 3600) -> Dict:
    """Measure `job` (see worker.py) in a child; returns status, statistics, peak memory, raw samples."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "samexport.bench.worker", json.dumps(job)],
            stdout=out,
            stderr=err,
            preexec_fn=_limit(limit_bytes),
        )
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return {"status": "error", "error": f"timed out after {timeout_s:.0f} s"}
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if code == 0 and lines:
        raw = json.loads(lines[-1])
        result = {
            "status": "nan" if raw["non_finite"] else "ok",
            "load_ms": raw["load_ms"],
            "first_ms": raw["first_ms"],
            "warmup_ms": raw["warmup_ms"],
            "samples_ms": raw["samples_ms"],
            "stats": summarize(raw["samples_ms"]),
            "peak_rss_mb": round(raw["peak_rss_mb"], 1),
            "load_warm_ms": raw["load_warm_ms"],
            "inputs": raw["inputs"],
        }
        # Core ML: the compile and where the ops run; Core AI, LiteRT: the function run; LiteRT: its threads
        for key in ("compile_ms", "placement", "function", "threads"):
            if key in raw:
                result[key] = raw[key]
        if raw["non_finite"]:
            result["error"] = f"{raw['non_finite']} NaN/Inf output values"
        return result
    tail = stderr.strip().splitlines()[-1][:300] if stderr.strip() else f"exit code {code}"
    # A child that failed reports no peak of its own (ru_maxrss would include the parent's, see
    # worker.peak_rss_mb); under a limit its peak is bounded by that limit.
    failure = {
        "status": "error",
        "peak_rss_mb": None,
        "error": tail,
        "memory_limit_mb": round(limit_bytes / 1024**2) if limit_bytes else None,
    }
    if limit_bytes is None:
        return failure
    killed = code < 0 and -code in (signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT)
    if killed or any(m.lower() in stderr.lower() for m in OOM_MARKERS):
        failure.update(status="oom", oom_evidence="allocation failure under the limit")
        return failure
    # A starved interpreter can fail in generic ways (SystemError, ImportError): decide by running the
    # part once without the limit. If that succeeds, the limit was the cause.
    confirm = run_part({**job, "runs": 1, "warmup": 0}, None, timeout_s)
    if confirm["status"] in ("ok", "nan"):
        failure.update(
            status="oom",
            oom_evidence=f"fails under the limit, runs without it (peak {confirm['peak_rss_mb']} MB)",
        )
    return failure
