"""Core ML's runners: Core ML prediction (macOS on Apple silicon), each function compiled once, or the saved
ML program evaluated op by op (`samexport.mileval`, any platform; fp16 programs also in float32, as a
tolerance reference); `resolve_method` chooses between them."""

from __future__ import annotations

from typing import Dict

import numpy as np

from ..errors import UsageError
from ..platforms import is_apple_silicon
from ..runtime import Runner

METHODS = ("auto", "coreml", "numpy")


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
