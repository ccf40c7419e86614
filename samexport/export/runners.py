"""What runs an exported part for a check, a segment run or a comparison: one interface, seven runners.

- `TorchRunner`: a PyTorch module (the reparameterized model against the official one).
- `Float16DeviceRunner`: the same module in simulated float16 device arithmetic (`float16_device`).
- `OnnxRunner`: onnxruntime's CPU provider (the heads' hard masks read back where a graph has them).
- `CoreMLRunner`: Core ML prediction (macOS on Apple silicon), each function compiled once.
- `NumpyRunner`: the saved ML program evaluated op by op (`samexport.mileval`, any platform); fp16
  programs also in float32, as a tolerance reference.
- `CoreAIRunner`: Apple's Core AI runtime, in a child process per asset.
- `LiteRTRunner`: Google's LiteRT runtime on its XNNPACK CPU path, the one Android phones use.

`run(feeds) -> (outputs, extras)`: `extras` may carry `hard_masks`, the evaluator's `evaluation`
summary and its `fp32_outputs`; `origin(extras)` says where a failure started.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

from ..errors import UsageError
from ..platforms import is_apple_silicon

METHODS = ("auto", "coreml", "numpy")


class Runner(ABC):
    description: str
    runtime: str  # the floor's runtime (quality.floor_for): onnxruntime, coreml, numpy, torch

    @abstractmethod
    def run(self, feeds: Dict[str, np.ndarray]) -> Tuple[Dict[str, np.ndarray], Dict]:
        """Outputs by name, and what else the runtime saw."""

    def origin(self, extras: Dict) -> str:
        """Where a failure started (the evaluator knows), for the failure line."""
        return ""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release what the runner holds (a child process, temporary files)."""


class TorchRunner(Runner):
    runtime = "numpy"  # float32 CPU arithmetic: the exact floor

    def __init__(self, module, output_names, input_names=None) -> None:
        self.module, self.output_names = module, list(output_names)
        self.input_names = list(input_names) if input_names is not None else None
        self.description = "PyTorch (float32 CPU)"

    def run(self, feeds):
        import torch

        ordered = [feeds[n] for n in self.input_names] if self.input_names else list(feeds.values())
        with torch.no_grad():
            values = self.module(*(torch.from_numpy(np.asarray(v)) for v in ordered))
        values = values if isinstance(values, tuple) else (values,)
        return dict(zip(self.output_names, (v.numpy() for v in values))), {}


class Float16DeviceRunner(Runner):
    """A part's module in float16 device arithmetic, simulated the same way on every CPU: what a phone that
    computes in float16 gets from a float16 export of it."""

    runtime = "float16_device"
    description = "float16 device arithmetic (simulated: float16 values, products accumulated in float16)"

    def __init__(self, module, output_names, input_names) -> None:
        self.module, self.output_names, self.input_names = module, list(output_names), list(input_names)

    def run(self, feeds):
        from .float16_device import simulate

        return dict(zip(self.output_names, simulate(self.module, feeds, self.input_names))), {}


class OnnxRunner(Runner):
    runtime = "onnxruntime"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        from . import onnx_export

        self.session, self.names, self.masks = onnx_export.session_with_hard_masks(path, threads)
        self.description = "onnxruntime (CPU)"

    def run(self, feeds):
        wanted = {i.name for i in self.session.get_inputs()}
        values = self.session.run(None, {k: v for k, v in feeds.items() if k in wanted})
        extras = {"hard_masks": values[len(self.names) :]} if self.masks else {}
        return dict(zip(self.names, values[: len(self.names)])), extras


def function_for(path: Path, functions: Dict[str, Dict[str, list]], feeds: Dict[str, np.ndarray]) -> str:
    """The static function (signature) of a file whose input shapes are the feeds' shapes."""
    shapes = {k: list(np.shape(v)) for k, v in feeds.items()}
    for name, wanted in functions.items():
        if all(shapes.get(k) == list(v) for k, v in wanted.items()):
            return name
    raise UsageError(f"{Path(path).name} has no function taking {shapes}; it has {', '.join(functions)}")


def resolve_method(method: str) -> str:
    """How Core ML packages are run here: `auto` is Core ML on a Mac, else the NumPy evaluator."""
    from . import coreml_export

    if method not in METHODS:
        raise UsageError(f"unknown --method {method!r}; choose one of: {', '.join(METHODS)}")
    if method == "auto":
        return "coreml" if is_apple_silicon() else "numpy"
    if method == "coreml":
        coreml_export.require_prediction()
    return method


class CoreMLRunner(Runner):
    """Core ML prediction, each function compiled once (macOS on Apple silicon)."""

    runtime = "coreml"

    def __init__(self, package, compute_units: str = "ALL") -> None:
        from . import coreml_export

        coreml_export.require_prediction()
        self.package, self.compute_units = package, compute_units
        self.models: Dict[str, object] = {}
        self.description = f"Core ML prediction (compute units {compute_units})"
        self.image_inputs = {f["name"] for f in package.io["inputs"] if f["kind"] == "image"}

    def run(self, feeds):
        from PIL import Image

        from . import coreml_export

        function = self.package.function_for(
            {k: np.shape(v) for k, v in feeds.items() if k not in self.image_inputs}
        )
        if function not in self.models:
            chosen = function if len(self.package.functions) > 1 else None
            self.models[function] = coreml_export.load_for_prediction(
                self.package.path, self.compute_units, chosen
            )
        feeds = {
            k: Image.fromarray(v[0].transpose(1, 2, 0).round().astype(np.uint8))
            if k in self.image_inputs
            else v
            for k, v in feeds.items()
        }
        return coreml_export.predict(self.models[function], feeds), {}


class NumpyRunner(Runner):
    """The saved ML program evaluated op by op; fp16 programs also in float32 as a tolerance reference."""

    runtime = "numpy"

    def __init__(self, package, fp32_reference: bool = True) -> None:
        from ..mileval import load_program

        self.package = package
        self.program = load_program(package)
        self.programs = {package.function: self.program}
        self.fp16 = self.program.is_fp16()
        self.fp32_reference = fp32_reference
        self.description = (
            "NumPy evaluation of the saved ML program (samexport.mileval), fp16 values rounded "
            "where the program declares fp16"
            if self.fp16
            else "NumPy evaluation of the saved ML program (samexport.mileval), float32"
        )

    def run(self, feeds):
        from ..coreml_package import CoreMLPackage
        from ..mileval import evaluate, load_program

        function = self.package.function_for({k: np.shape(v) for k, v in feeds.items()})
        if function not in self.programs:
            self.programs[function] = load_program(CoreMLPackage(self.package.path, function))
        program = self.programs[function]
        names, masks = program.hard_masks(), {}
        observe = (
            (lambda name, value: masks.__setitem__(name, value) if name in names else None) if names else None
        )
        evaluation = evaluate(program, feeds, "program", observe=observe)
        extras = {"evaluation": evaluation.summary()}
        if names:
            extras["hard_masks"] = [np.asarray(masks[name], dtype=bool) for name in names]
        if self.fp16 and self.fp32_reference:
            extras["fp32_outputs"] = evaluate(program, feeds, "fp32").outputs
        return evaluation.outputs, extras

    def origin(self, extras: Dict) -> str:
        """Where the evaluator saw the first NaN/Inf or fp16 overflow."""
        evaluation = extras.get("evaluation") or {}
        parts = []
        for overflow in evaluation.get("fp16_overflows", [])[:1]:
            parts.append(
                f"fp16 overflow in {overflow['type']} op '{overflow['op']}' (|x| reached "
                f"{overflow['max_abs']:.3g} > 65504)"
            )
        first = evaluation.get("first_non_finite")
        if first and not parts:
            parts.append(f"first NaN/Inf from {first['type']} op '{first['op']}'")
        return f" ({'; '.join(parts)})" if parts else ""


def coreml_runner(package, method: str, fp32_reference: bool = True, compute_units: str = "ALL") -> Runner:
    """A Core ML package's runner for a resolved `method` (coreml or numpy)."""
    if method == "coreml":
        return CoreMLRunner(package, compute_units)
    return NumpyRunner(package, fp32_reference)


class CoreAIRunner(Runner):
    """Apple's Core AI runtime (`coreai.runtime`) running one `.aimodel` in a child process that lowers it
    once (`coreai_child`). On Linux the runtime is its reference CPU path (float32 kernels of its own); on
    macOS 27 the OS runtime decides where it runs."""

    def __init__(self, path: Path, functions: Dict[str, Dict[str, list]]) -> None:
        import os
        import subprocess
        import sys
        import tempfile

        from ..platforms import is_macos

        self.path, self.functions = Path(path), functions
        self.runtime = "coreai" if is_macos() else "coreai_reference"
        self.description = (
            "Core AI runtime (macOS)"
            if is_macos()
            else "Core AI runtime, reference CPU path (coreai-core, Linux)"
        )
        # the system's temporary folder, not convert's work folder (tempfile.tempdir points there meanwhile);
        # a folder left by a killed run (its process gone) is removed by the next runner
        system_tmp = os.environ.get("TMPDIR") or "/tmp"
        from ..fsutil import remove_abandoned

        remove_abandoned(Path(system_tmp), "samexport-coreai-")
        self.folder = tempfile.TemporaryDirectory(prefix=f"samexport-coreai-{os.getpid()}-", dir=system_tmp)
        self.log = open(Path(self.folder.name) / "stderr.txt", "w+b")  # noqa: SIM115 (lives with the runner)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "samexport.export.coreai_child", str(self.path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env={**os.environ, "TMPDIR": self.folder.name},  # the runtime's own scratch files go with ours
        )
        try:
            self.ready = self.answer()
        except BaseException:
            self.close()
            raise
        self.count = 0

    def answer(self) -> Dict:
        import json

        from .coreai_child import REPLY

        for line in self.process.stdout:
            if line.startswith(REPLY):
                return json.loads(line[len(REPLY) :])
        self.log.seek(0)
        tail = self.log.read().decode(errors="replace").strip().splitlines()[-3:]
        status = self.process.wait()
        how = f"signal {-status}" if status < 0 else f"exit {status}"
        stage = "running" if hasattr(self, "ready") else "loading"
        raise UsageError(
            f"Apple's Core AI runtime stopped while {stage} {self.path.name} ({how}); the asset may be "
            "damaged: convert it again" + (f" [{' | '.join(tail)}]" if tail else "")
        )

    def run(self, feeds):
        import json

        function = function_for(self.path, self.functions, feeds)
        self.count += 1
        folder = Path(self.folder.name)
        feeds_path, outputs_path = folder / f"in{self.count}.npz", folder / f"out{self.count}.npz"
        np.savez(feeds_path, **{k: np.asarray(v, dtype=np.float32) for k, v in feeds.items()})
        request = {"function": function, "feeds": str(feeds_path), "outputs": str(outputs_path)}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer = self.answer()
        with np.load(outputs_path) as stored:
            outputs = {k: stored[k] for k in stored.files}
        feeds_path.unlink()
        outputs_path.unlink()
        return outputs, {"runtime_seconds": answer["seconds"]}

    def close(self) -> None:
        if self.log.closed:
            return
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=60)
        self.log.close()
        self.folder.cleanup()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the child dies with its stdin
            pass


class LiteRTRunner(Runner):
    """Google's LiteRT runtime (`ai_edge_litert`'s CompiledModel on its XNNPACK CPU accelerator), one
    static signature per call, in float32 inference: the same arithmetic on every CPU (XNNPACK's float16
    inference is float16 arithmetic on some CPUs and float32 on others; what a float16 device gets is
    `Float16DeviceRunner`'s to say)."""

    runtime = "litert"

    def __init__(self, path: Path, functions: Dict[str, Dict[str, list]], threads: int | None = None) -> None:
        import os

        from .litert_export import CompiledPart

        self.path, self.functions = Path(path), functions
        self.threads = threads or os.cpu_count() or 1
        self.compiled = CompiledPart(self.path, self.threads)
        self.description = f"LiteRT, XNNPACK CPU, float32 inference, {self.threads} threads"

    def run(self, feeds):
        import time

        function = function_for(self.path, self.functions, feeds)
        self.compiled.prepare(function)
        start = time.perf_counter()
        outputs = self.compiled.run(function, feeds)
        return outputs, {"runtime_seconds": time.perf_counter() - start}

    def close(self) -> None:
        if self.compiled.model is not None:
            self.compiled.close()
