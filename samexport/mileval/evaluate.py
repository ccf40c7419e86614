"""Run an ML program op by op in NumPy.

Precision "program" evaluates the program as declared: every op computes in float32 and its
output is rounded to the dtype the program gives it, so an fp16 value beyond 65 504 becomes
inf exactly where Core ML would store an fp16 inf, and NaN spreads from there. Precision
"fp32" keeps every float value in float32 (the program's fp16 weights included, unchanged):
the tolerance reference that separates fp16 rounding from a conversion error.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from ..errors import SamExportError, UsageError
from . import constexpr_ops, conv_ops, math_ops, quantization_ops, sampling_ops, tensor_ops
from .program import FLOAT_TYPES, MilProgram, dtype_name
from .registry import DTYPES, OPS

OP_MODULES = (
    constexpr_ops,
    conv_ops,
    math_ops,
    quantization_ops,
    sampling_ops,
    tensor_ops,
)  # importing them registers their ops
PRECISIONS = ("program", "fp32")
FP16_MAX = 65504.0


class UnsupportedOpError(SamExportError):
    """The program uses a MIL op the evaluator does not implement (exit 2, naming the ops)."""

    exit_code = 2


@dataclass
class Evaluation:
    """A program's outputs for one set of feeds, with its fp16 range and NaN/Inf bookkeeping."""

    outputs: Dict[str, np.ndarray]
    precision: str
    seconds: float
    # The largest magnitude among the outputs of fp16-typed ops (before rounding), and where.
    fp16_peak: Dict = field(default_factory=dict)
    # fp16-typed ops whose finite float32 result overflowed the fp16 range.
    fp16_overflows: List[Dict] = field(default_factory=list)
    # The first op that produced NaN/Inf from finite inputs.
    first_non_finite: Optional[Dict] = None

    def summary(self) -> Dict:
        return {
            "precision": self.precision,
            "seconds": round(self.seconds, 2),
            "fp16_peak": self.fp16_peak,
            "fp16_overflows": self.fp16_overflows[:5],
            "fp16_overflow_count": len(self.fp16_overflows),
            "first_non_finite": self.first_non_finite,
        }


def check_feeds(program: MilProgram, feeds: Dict[str, np.ndarray]) -> None:
    """The names and shapes Core ML would accept: declared shapes, or one of the enumerated ones."""
    missing = sorted(set(program.inputs) - set(feeds))
    unknown = sorted(set(feeds) - set(program.inputs))
    if missing or unknown:
        raise UsageError(
            f"{program.path.name} takes inputs {sorted(program.inputs)}; missing {missing}, unknown {unknown}"
        )
    for name, declared in program.inputs.items():
        shape = tuple(np.shape(feeds[name]))
        if declared.enumerated:
            if shape not in declared.enumerated:
                raise UsageError(
                    f"input {name} of shape {shape} is not one of the enumerated shapes "
                    f"{declared.enumerated} of {program.path.name}"
                )
        elif len(shape) != len(declared.shape) or any(
            d is not None and d != s for d, s in zip(declared.shape, shape)
        ):
            raise UsageError(f"input {name} has shape {shape}; {program.path.name} declares {declared.shape}")


Observer = Callable[[str, np.ndarray], None]


def evaluate(
    program: MilProgram,
    feeds: Dict[str, np.ndarray],
    precision: str = "program",
    observe: Optional[Observer] = None,
) -> Evaluation:
    """Outputs of the program's main function for `feeds` (input name -> array); `observe(name, value)`
    sees every input and every value an op computes, as stored (calibration hooks in here)."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown evaluation precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    unsupported = program.unsupported_ops()
    if unsupported:
        raise UnsupportedOpError(
            f"{program.path.name} uses MIL ops the NumPy evaluator does not implement: "
            f"{', '.join(unsupported)}"
        )
    check_feeds(program, feeds)
    run = _Run(program, precision, observe)
    start = time.perf_counter()
    with np.errstate(all="ignore"):  # overflow and NaN are tracked per op, not warned about
        outputs = run.execute(feeds)
    return Evaluation(
        outputs=outputs,
        precision=precision,
        seconds=time.perf_counter() - start,
        fp16_peak=run.peak,
        fp16_overflows=run.overflows,
        first_non_finite=run.first_non_finite,
    )


class _Run:
    """One evaluation in progress: the value environment and what was seen while filling it."""

    def __init__(self, program: MilProgram, precision: str, observe: Optional[Observer] = None) -> None:
        self.program = program
        self.observe = observe
        self.round_fp16 = precision == "program"
        self.peak: Dict = {}
        self.overflows: List[Dict] = []
        self.first_non_finite: Optional[Dict] = None
        self.non_finite: set = set()

    def execute(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        program = self.program
        operations = [op for op in program.operations if op.op_type != "const"]
        last_use = self.last_uses(operations)
        env: Dict[str, object] = dict(program.constants())
        for name, declared in program.inputs.items():
            env[name] = self.store(declared.dtype, np.asarray(feeds[name]), name, "input")
            if self.observe is not None:
                self.observe(name, env[name])
        for index, op in enumerate(operations):
            kwargs = {
                param: [env[v.name] for v in value] if isinstance(value, (list, tuple)) else env[value.name]
                for param, value in op.inputs.items()
            }
            try:
                result = OPS[op.op_type](**kwargs)
            except Exception as e:
                raise SamExportError(
                    f"evaluating {op.op_type} op {op.name!r} of {program.path.name} failed: "
                    f"{type(e).__name__}: {e}"
                ) from e
            results = result if isinstance(result, tuple) else (result,)
            inputs_finite = not any(v.name in self.non_finite for v in _input_vars(op))
            for var, value in zip(op.outputs, results):
                if _moves_values_only(op, var):
                    env[var.name] = value
                    if not inputs_finite:
                        self.non_finite.add(var.name)
                else:
                    env[var.name] = self.store(dtype_name(var), value, var.name, op.op_type, inputs_finite)
                if self.observe is not None:
                    self.observe(var.name, env[var.name])
            for name in last_use.get(index, ()):
                env.pop(name, None)
        return {name: np.asarray(env[name], dtype=np.float32) for name in program.outputs}

    def last_uses(self, operations) -> Dict[int, List[str]]:
        """op index -> values no later op reads (freed there; encoders at 1024 would not fit otherwise)."""
        last: Dict[str, int] = {}
        for index, op in enumerate(operations):
            for var in _input_vars(op):
                last[var.name] = index
        keep = set(self.program.outputs) | set(self.program.constants())
        by_index: Dict[int, List[str]] = defaultdict(list)
        for name, index in last.items():
            if name not in keep:
                by_index[index].append(name)
        return by_index

    def store(self, dtype: str, value, name: str, op_type: str, inputs_finite: bool = True):
        """The value as the program types it, with fp16 range and NaN/Inf bookkeeping."""
        if dtype not in FLOAT_TYPES:
            return np.asarray(value).astype(DTYPES[dtype], copy=False)
        value = np.asarray(value, dtype=np.float32)
        if value.size == 0:
            return value
        high, low = float(value.max()), float(value.min())
        finite = np.isfinite(high) and np.isfinite(low)
        if dtype == "fp16" and finite:
            magnitude = max(abs(high), abs(low))
            if magnitude > self.peak.get("max_abs", -1.0):
                self.peak = {
                    "max_abs": magnitude,
                    "op": name,
                    "type": op_type,
                    "fraction_of_fp16_max": magnitude / FP16_MAX,
                }
            if self.round_fp16:
                value = round_to_fp16(value)
                if magnitude > FP16_MAX and not np.isfinite(value).all():
                    self.overflows.append({"op": name, "type": op_type, "max_abs": magnitude})
                    finite = False
        if not finite:
            self.non_finite.add(name)
            if inputs_finite and self.first_non_finite is None:
                self.first_non_finite = {
                    "op": name,
                    "type": op_type,
                    "count": int((~np.isfinite(value)).sum()),
                }
        return value


def _moves_values_only(op, var) -> bool:
    """A layout op (see OpDef.moves) whose float output keeps its input's dtype: nothing to round."""
    moves = OPS[op.op_type].moves
    if moves is None or dtype_name(var) not in FLOAT_TYPES:
        return False
    source = op.inputs[moves]
    source = source if isinstance(source, (list, tuple)) else [source]
    return all(dtype_name(v) == dtype_name(var) for v in source)


def round_to_fp16(value: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest fp16 (beyond 65 504: inf), kept as float32.

    torch's conversion is exact and vectorised; NumPy's takes ~80 ns per value that lands in the
    fp16 subnormal range, which is most of a softmax output (15 s for one ViT-B attention map).
    """
    return torch.from_numpy(np.ascontiguousarray(value)).to(torch.float16).to(torch.float32).numpy()


def _input_vars(op):
    for value in op.inputs.values():
        if isinstance(value, (list, tuple)):
            yield from value
        else:
            yield value
