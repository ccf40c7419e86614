"""Measure one exported part (ONNX, or Core ML on macOS) in this process and print one JSON line.

Run by `run_part` in a child process, so a part that runs out of memory kills only its child.

    python -m samexport.bench.worker '{"path": ..., "part": "encoder", "points": 1, "runs": 5, "warmup": 1}'
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Dict

import numpy as np

from ..platforms import is_macos


def onnx_inputs(session, points: int, batch: int = 1) -> Dict[str, np.ndarray]:
    """Deterministic inputs of the right shapes (`batch` prompt sets of `points` tokens); latency does not
    depend on their values."""
    rng = np.random.default_rng(0)
    feeds = {}
    dynamic = {"numPromptSets": batch, "numPoints": points, "numPrompts": points}
    for spec in session.get_inputs():
        shape = [d if isinstance(d, int) else dynamic.get(d, points) for d in spec.shape]
        if spec.name in ("pointCoords", "prompts"):
            feeds[spec.name] = np.sort(rng.uniform(0, 512, shape), axis=-1).astype(np.float32)
        elif spec.name == "resizedSize":
            feeds[spec.name] = np.array([512.0, 512.0], np.float32)
        elif spec.name == "pointLabels":
            feeds[spec.name] = np.ones(shape, np.float32)
        elif spec.name in ("maskInput", "hasMaskInput"):
            feeds[spec.name] = np.zeros(shape, np.float32)
        else:
            feeds[spec.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def measure_onnx(path: str, points: int, runs: int, warmup: int, providers, batch: int = 1) -> Dict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    start = time.perf_counter()
    session = ort.InferenceSession(path, options, providers=providers)
    load_ms = (time.perf_counter() - start) * 1e3
    start = time.perf_counter()  # warm: the file is in the page cache, the runtime initialized
    session = ort.InferenceSession(path, options, providers=providers)
    load_warm_ms = (time.perf_counter() - start) * 1e3
    feeds = onnx_inputs(session, points, batch)
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


def coreml_inputs(spec, points: int, batch: int = 1) -> Dict:
    """Inputs for a samexport Core ML package, from its own description (macOS only)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    feeds: Dict = {}
    for feature in spec.description.input:
        if feature.type.WhichOneof("Type") == "imageType":
            pixels = rng.integers(
                0, 256, (feature.type.imageType.height, feature.type.imageType.width, 3), dtype=np.uint8
            )
            feeds[feature.name] = Image.fromarray(pixels)
            continue
        shape = list(feature.type.multiArrayType.shape)
        if feature.name == "points":
            shape = [batch, points, 3]
            value = np.concatenate(
                [rng.uniform(0, 1024, (batch, points, 2)), np.ones((batch, points, 1))], -1
            )
        elif feature.name == "prompts":  # RAP-SAM: N xyxy boxes
            value = np.sort(rng.uniform(0, 512, (1, points, 4)), axis=-1)
        elif feature.name == "resizedSize":
            value = np.array([512.0, 512.0])
        elif feature.name in ("maskInput", "hasMaskInput"):
            value = np.zeros(shape)
        else:
            value = rng.standard_normal(shape)
        feeds[feature.name] = value.astype(np.float32)
    return feeds


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


def measure_coreml(
    path: str, points: int, runs: int, warmup: int, compute_units: str, batch: int = 1
) -> Dict:
    """Compile and load times (see coreml_loads), then the first prediction, warm-up and timed
    predictions with coremltools' MLModelBenchmarker (its durations come from Core ML itself)."""
    import asyncio

    import coremltools as ct
    from coremltools.models.ml_program.experimental.perf_utils import MLModelBenchmarker

    loads = coreml_loads(path, compute_units)
    model = ct.models.MLModel(path, compute_units=getattr(ct.ComputeUnit, COMPUTE_UNITS[compute_units]))
    spec = model.get_spec()
    feeds = coreml_inputs(spec, points, batch)
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
    if job.get("backend", "onnx") == "coreml":
        result = measure_coreml(
            job["path"], job["points"], job["runs"], job["warmup"], job["compute_units"], job.get("batch", 1)
        )
    else:
        result = measure_onnx(
            job["path"],
            job["points"],
            job["runs"],
            job["warmup"],
            job.get("providers", ["CPUExecutionProvider"]),
            job.get("batch", 1),
        )
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
