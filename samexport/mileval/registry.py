"""The op registry of the NumPy MIL evaluator and the parameter helpers every op module uses."""

from __future__ import annotations

from typing import Callable, Dict, List

import numpy as np

OPS: Dict[str, Callable] = {}

DTYPES = {"fp16": np.float16, "fp32": np.float32, "fp64": np.float64, "int8": np.int8, "uint8": np.uint8,
          "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32, "int64": np.int64,
          "bool": np.bool_}


def op(*names: str):
    """Register a NumPy implementation under its MIL op type (the function name by default)."""

    def register(fn: Callable) -> Callable:
        for name in names or (fn.__name__,):
            OPS[name] = fn
        return fn

    return register


def ints(value) -> List[int]:
    return [int(v) for v in np.asarray(value).reshape(-1)]


def axis_of(axis, rank: int) -> int:
    axis = int(axis)
    return axis + rank if axis < 0 else axis


def axes_of(axes, rank: int):
    return None if axes is None else tuple(axis_of(a, rank) for a in ints(axes))
