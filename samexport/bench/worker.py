"""Measure one exported part (ONNX, LiteRT, or Core ML / Core AI on macOS) in this process and print one
JSON line.

Run by `run_part` in a child process, so a part that runs out of memory kills only its child.

    python -m samexport.bench.worker '{"backend": "onnx", "path": ..., "part": ..., "inputs": [...],
                                       "sizes": {"N": 1}, "runs": 5, "warmup": 1}'

The inputs are the part's description (`parts.Interface`), filled by `parts.synthetic_feeds`.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Callable, Dict

import numpy as np

from ..platforms import is_macos

MEASURES: Dict[str, Callable[[Dict, Dict[str, np.ndarray]], Dict]] = {}


def measure(backend: str):
    """Register the measure function of a host backend (`job["backend"]`): (job, feeds) -> timings."""

    def register(fn):
        if backend in MEASURES:
            raise ValueError(f"bench measure for backend {backend!r} is registered twice")
        MEASURES[backend] = fn
        return fn

    return register


def feeds_for(job: Dict) -> Dict[str, np.ndarray]:
    """The part's inputs from its description (`job["inputs"]`, `parts.Tensor.describe()` records) with the
    symbolic dims at `job["sizes"]` (what the part's interface says the bench size sets; others 1)."""
    from ..parts import synthetic_feeds

    return synthetic_feeds(job["inputs"], job.get("sizes", {}))


@measure("onnx")
def measure_onnx(job: Dict, feeds: Dict[str, np.ndarray]) -> Dict:
    import onnxruntime as ort

    path, runs, warmup = job["path"], job["runs"], job["warmup"]
    providers = job.get("providers", ["CPUExecutionProvider"])

    options = ort.SessionOptions()
    start = time.perf_counter()
    session = ort.InferenceSession(path, options, providers=providers)
    load_ms = (time.perf_counter() - start) * 1e3
    start = time.perf_counter()  # warm: the file is in the page cache, the runtime initialized
    session = ort.InferenceSession(path, options, providers=providers)
    load_warm_ms = (time.perf_counter() - start) * 1e3
    start = time.perf_counter()
    outputs = session.run(None, feeds)
    first_ms = (time.perf_counter() - start) * 1e3
    non_finite = int(sum((~np.isfinite(o)).sum() for o in outputs))
    warmup_ms = []
    for _ in range(warmup):
        start = time.perf_counter()
        session.run(None, feeds)
        warmup_ms.append((time.perf_counter() - start) * 1e3)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feeds)
        samples.append((time.perf_counter() - start) * 1e3)
    return {
        "load_ms": load_ms,
        "load_warm_ms": load_warm_ms,
        "first_ms": first_ms,
        "warmup_ms": warmup_ms,
        "samples_ms": samples,
        "non_finite": non_finite,
        "inputs": {k: list(v.shape) for k, v in feeds.items()},
    }


COMPUTE_UNITS = {
    "all": "ALL",
    "cpu_and_ne": "CPU_AND_NE",
    "cpu_and_gpu": "CPU_AND_GPU",
    "cpu_only": "CPU_ONLY",
}


def coreml_loads(path: str, compute_units: str) -> Dict:
    """Compile the package to a fresh folder, then load it twice from that compiled URL: the first load
    is uncached (Core ML specializes the model for the device), the second is warm. The harness app
    measures the same three on the device, under the same names."""
    import tempfile

    import coremltools as ct

    from ..coreml_placement import placement_or_reason

    units = getattr(ct.ComputeUnit, COMPUTE_UNITS[compute_units])
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        compiled = ct.utils.compile_model(path, destination_path=f"{tmp}/model.mlmodelc")
        compile_ms = (time.perf_counter() - start) * 1e3
        start = time.perf_counter()
        first = ct.models.CompiledMLModel(compiled, compute_units=units)
        load_ms = (time.perf_counter() - start) * 1e3
        del first
        start = time.perf_counter()
        ct.models.CompiledMLModel(compiled, compute_units=units)
        load_warm_ms = (time.perf_counter() - start) * 1e3
        placement = placement_or_reason(compiled, COMPUTE_UNITS[compute_units])
    return {
        "compile_ms": compile_ms,
        "load_ms": load_ms,
        "load_warm_ms": load_warm_ms,
        "placement": placement,
    }


@measure("coreml")
def measure_coreml(job: Dict, feeds: Dict[str, np.ndarray]) -> Dict:
    """Compile and load times (see coreml_loads), then the first prediction, warm-up and timed
    predictions with coremltools' MLModelBenchmarker (its durations come from Core ML itself)."""
    import asyncio

    import coremltools as ct
    from coremltools.models.ml_program.experimental.perf_utils import MLModelBenchmarker
    from PIL import Image

    path, runs, warmup, compute_units = job["path"], job["runs"], job["warmup"], job["compute_units"]
    loads = coreml_loads(path, compute_units)
    model = ct.models.MLModel(path, compute_units=getattr(ct.ComputeUnit, COMPUTE_UNITS[compute_units]))
    images = {t["name"] for t in job["inputs"] if t["image"]}
    feeds = {
        k: Image.fromarray(v[0].transpose(1, 2, 0).astype(np.uint8)) if k in images else v
        for k, v in feeds.items()
    }
    benchmarker = MLModelBenchmarker(model=model)

    async def measure():
        first = await benchmarker.benchmark_predict(inputs=feeds, iterations=1)
        warm = await benchmarker.benchmark_predict(inputs=feeds, iterations=warmup) if warmup else None
        steady = await benchmarker.benchmark_predict(inputs=feeds, iterations=runs)
        return first, warm, steady

    first, warm, steady = asyncio.run(measure())
    outputs = model.predict(feeds)
    non_finite = int(sum((~np.isfinite(np.asarray(v, dtype=np.float32))).sum() for v in outputs.values()))
    return {
        **loads,
        "first_ms": first.samples[0],
        "warmup_ms": list(warm.samples) if warm else [],
        "samples_ms": list(steady.samples),
        "non_finite": non_finite,
        "inputs": {k: list(np.shape(v)) for k, v in feeds.items()},
    }


@measure("coreai")
def measure_coreai(job: Dict, feeds: Dict[str, np.ndarray]) -> Dict:
    """A Core AI asset on macOS 27's OS runtime: the load (specialization for this Mac included), a second
    load, the first call, warm-up and timed calls of the function taking these shapes."""
    import asyncio

    from coreai.authoring import AIModelAsset
    from coreai.runtime import AIModel, NDArray

    from ..export.coreai_export import read_metadata

    path, runs, warmup = job["path"], job["runs"], job["warmup"]
    functions = json.loads(read_metadata(path)["com.samexport.functions"])
    shapes = {k: list(v.shape) for k, v in feeds.items()}
    function = next(n for n, s in functions.items() if all(shapes[k] == list(v) for k, v in s.items()))
    arrays = {k: NDArray(np.ascontiguousarray(v)) for k, v in feeds.items()}

    async def measure() -> Dict:
        AIModelAsset.load(path)  # checks the asset before the timed loads
        start = time.perf_counter()
        model = await AIModel.load(path)
        load_ms = (time.perf_counter() - start) * 1e3
        del model
        start = time.perf_counter()
        model = await AIModel.load(path)
        load_warm_ms = (time.perf_counter() - start) * 1e3
        run = model.load_function(function)
        start = time.perf_counter()
        outputs = await run(arrays)
        first_ms = (time.perf_counter() - start) * 1e3
        non_finite = int(sum((~np.isfinite(v.numpy())).sum() for v in outputs.values()))
        timings = []
        for _ in range(warmup + runs):
            start = time.perf_counter()
            await run(arrays)
            timings.append((time.perf_counter() - start) * 1e3)
        return {
            "load_ms": load_ms,
            "load_warm_ms": load_warm_ms,
            "first_ms": first_ms,
            "warmup_ms": timings[:warmup],
            "samples_ms": timings[warmup:],
            "non_finite": non_finite,
            "function": function,
        }

    return {**asyncio.run(measure()), "inputs": shapes}


@measure("litert")
def measure_litert(job: Dict, feeds: Dict[str, np.ndarray]) -> Dict:
    """A `.tflite` compiled by LiteRT for the CPU (XNNPACK, float32 inference: an app's default) on
    `job["threads"]` threads: two loads (the second warm), the first call of the signature taking these
    shapes, warm-up, timed calls."""
    from ..export.litert_export import CompiledPart, read_metadata
    from ..export.runners import function_for

    path, runs, warmup, threads = job["path"], job["runs"], job["warmup"], job["threads"]
    signature = function_for(path, json.loads(read_metadata(path)["com.samexport.functions"]), feeds)
    loads = []
    for attempt in range(2):
        start = time.perf_counter()
        compiled = CompiledPart(path, threads)
        compiled.prepare(signature)
        loads.append((time.perf_counter() - start) * 1e3)
        if attempt == 0:
            compiled.close()
    start = time.perf_counter()
    outputs = compiled.run(signature, feeds)
    first_ms = (time.perf_counter() - start) * 1e3
    non_finite = int(sum((~np.isfinite(v)).sum() for v in outputs.values()))
    timings = []
    for _ in range(warmup + runs):
        start = time.perf_counter()
        compiled.run(signature, feeds)
        timings.append((time.perf_counter() - start) * 1e3)
    compiled.close()
    return {
        "load_ms": loads[0],
        "load_warm_ms": loads[1],
        "first_ms": first_ms,
        "warmup_ms": timings[:warmup],
        "samples_ms": timings[warmup:],
        "non_finite": non_finite,
        "function": signature,
        "threads": threads,
        "inputs": {k: list(v.shape) for k, v in feeds.items()},
    }


def peak_rss_mb() -> float:
    """This process's own peak resident memory.

    On Linux ru_maxrss is inherited across fork + exec (a child starts with its parent's high-water
    mark), so VmHWM of the new address space is read instead. macOS reports ru_maxrss in bytes.
    """
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 1024**2 if is_macos() else maxrss / 1024


def main() -> None:
    job = json.loads(sys.argv[1])
    result = MEASURES[job["backend"]](job, feeds_for(job))
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
