"""The op registry of the NumPy MIL evaluator and the parameter helpers every op module uses.

Every op is registered through `op(...)`, once: a second registration of a name is an error, as
in coremltools' own op registry. Traits the evaluator needs are declared with the op.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List

import numpy as np

DTYPES = {
    "fp16": np.float16,
    "fp32": np.float32,
    "fp64": np.float64,
    "int8": np.int8,
    "uint8": np.uint8,
    "int16": np.int16,
    "uint16": np.uint16,
    "int32": np.int32,
    "uint32": np.uint32,
    "int64": np.int64,
    "bool": np.bool_,
}


@dataclass(frozen=True)
class OpDef:
    """A MIL op's NumPy implementation and its traits.

    `moves` names the parameter whose values a layout op only rearranges (reshape, slice, concat,
    ...): its outputs are already rounded and range-checked, so the evaluator stores them as they are.
    """

    name: str
    fn: Callable
    moves: str | None = None

    def __call__(self, **kwargs):
        return self.fn(**kwargs)


OPS: Dict[str, OpDef] = {}


class DuplicateOpError(ValueError):
    """An op name registered twice."""


def op(name: str | None = None, *, moves: str | None = None) -> Callable[[Callable], Callable]:
    """Register a NumPy implementation under its MIL op type (the function's name by default)."""

    def register(fn: Callable) -> Callable:
        key = name or fn.__name__
        if key in OPS:
            raise DuplicateOpError(
                f"MIL op {key!r} is registered twice ({OPS[key].fn.__module__} and "
                f"{fn.__module__}); remove one registration"
            )
        OPS[key] = OpDef(key, fn, moves)
        return fn

    return register


def ints(value) -> List[int]:
    return [int(v) for v in np.asarray(value).reshape(-1)]


def axis_of(axis, rank: int) -> int:
    axis = int(axis)
    return axis + rank if axis < 0 else axis


def axes_of(axes, rank: int):
    return None if axes is None else tuple(axis_of(a, rank) for a in ints(axes))
