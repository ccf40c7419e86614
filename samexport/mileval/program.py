"""Read the ML program back from a saved .mlpackage (not the converter's in-memory copy)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from ..coreml_package import CoreMLPackage
from ..errors import UsageError, first_line
from .registry import OPS

# Data types an ML program declares for its values, as coremltools names them.
FLOAT_TYPES = ("fp16", "fp32", "fp64")


@dataclass
class ProgramInput:
    """A declared input: name, dtype, shape (None where flexible) and enumerated shapes."""

    name: str
    dtype: str
    shape: Tuple  # ints, or None where the input is flexible
    enumerated: List[Tuple[int, ...]] = field(default_factory=list)


@dataclass
class MilProgram:
    """One function of a saved ML program, read back with coremltools' milproto loader."""

    path: Path
    function: object  # coremltools' MIL Function "main"
    inputs: Dict[str, ProgramInput]
    outputs: List[str]
    metadata: Dict[str, str]
    _constants: Dict[str, object] | None = None

    @property
    def operations(self) -> list:
        return list(self.function.operations)

    def op_types(self) -> Dict[str, int]:
        """Every op type in the program (consts included) with its count."""
        return dict(sorted(Counter(op.op_type for op in self.function.operations).items()))

    def unsupported_ops(self) -> List[str]:
        return [t for t in self.op_types() if t != "const" and t not in OPS]

    def hard_masks(self) -> List[str]:
        """Names of the program's hard masks in op order: `greater` ops fed by a `sigmoid` (RAP-SAM's pooling
        masks, sigmoid(logits) > 0.5)."""
        return [
            op.outputs[0].name
            for op in self.function.operations
            if op.op_type == "greater"
            and getattr(getattr(op.inputs.get("x"), "op", None), "op_type", None) == "sigmoid"
        ]

    def is_fp16(self) -> bool:
        return any(dtype_name(v) == "fp16" for op in self.function.operations for v in op.outputs)

    def constants(self) -> Dict[str, object]:
        """Values of the program's const ops (float tensors as float32), read once."""
        if self._constants is None:
            values = {}
            for op in self.function.operations:
                if op.op_type == "const":
                    var = op.outputs[0]
                    values[var.name] = as_value(var.val, dtype_name(var))
            self._constants = values
        return self._constants


def dtype_name(var) -> str:
    from coremltools.converters.mil.mil import types

    return types.builtin_to_string(var.dtype)


def as_value(value, dtype: str):
    """A const's value as the evaluator holds it: floats as float32 arrays, str/bool/int unchanged."""
    if isinstance(value, str):
        return value
    if dtype in FLOAT_TYPES:
        return np.asarray(value, dtype=np.float32)
    return np.asarray(value)


def load_program(package: Path | CoreMLPackage, function: str | None = None) -> MilProgram:
    """One function of a saved ML program package (`function`, else the package's default: `main` for a
    single-function package), with its declared inputs and metadata."""
    opened = package if isinstance(package, CoreMLPackage) else CoreMLPackage(Path(package), function)
    package, model, spec = opened.path, opened.model, opened.spec
    if spec.WhichOneof("Type") != "mlProgram":
        raise UsageError(
            f"{package} holds a neural network, not an ML program; the evaluator reads ML programs "
            "(convert with the default mlprogram format)"
        )
    from coremltools.converters.mil.frontend.milproto.load import load

    try:
        program = load(spec, spec.specificationVersion, file_weights_dir=model.weights_dir)
    except Exception as e:  # a truncated weight file or an op this coremltools cannot build
        raise UsageError(
            f"the ML program in {package} cannot be read back ({type(e).__name__}: {first_line(e)}); "
            "re-run `samexport convert`"
        ) from None
    function = program.functions[opened.function]
    described = {f["name"]: f for f in opened.io["inputs"]}
    inputs = {}
    for name, var in function.inputs.items():
        shape = tuple(int(d) if isinstance(d, (int, np.integer)) else None for d in var.shape)
        enumerated = [tuple(s) for s in described.get(name, {}).get("enumerated_shapes", [])]
        inputs[name] = ProgramInput(name, dtype_name(var), shape, enumerated)
    return MilProgram(
        path=package,
        function=function,
        inputs=inputs,
        outputs=[v.name for v in function.outputs],
        metadata=dict(spec.description.metadata.userDefined),
    )
