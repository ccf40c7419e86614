"""iOS17 activation quantization: `quantize` to int8/uint8 and `dequantize` back (W8A8 programs)."""

from __future__ import annotations

import numpy as np

from .registry import DTYPES, axis_of, op


def _along(param, data: np.ndarray, axis) -> np.ndarray:
    """A scalar, or a vector laid along `axis` of `data` (MIL's broadcast rule for scale/zero_point)."""
    param = np.asarray(param, dtype=np.float32)
    if param.ndim == 0 or axis is None:
        return param
    shape = [1] * data.ndim
    shape[axis_of(axis, data.ndim)] = param.size
    return param.reshape(shape)


@op()
def quantize(input, scale, output_dtype, zero_point=None, axis=None):
    """clip(round_half_even(input / scale) + zero_point) in the output integer type."""
    dtype = DTYPES[str(output_dtype)]
    x = np.asarray(input, dtype=np.float32)
    q = np.around(x / _along(scale, x, axis))
    if zero_point is not None:
        q = q + _along(zero_point, x, axis)
    info = np.iinfo(dtype)
    return np.clip(q, info.min, info.max).astype(dtype)


@op()
def dequantize(input, scale, zero_point=None, axis=None):
    """scale * (input - zero_point), as float."""
    q = np.asarray(input).astype(np.float32)
    if zero_point is not None:
        q = q - _along(zero_point, q, axis)
    return q * _along(scale, q, axis)
