"""Compile-time weight decompression ops: iOS16 affine/LUT, iOS18 blockwise/LUT."""

from __future__ import annotations

import math

import numpy as np

from .registry import axis_of, ints, op


def _unpack_bits(packed: np.ndarray, nbits: int, count: int) -> np.ndarray:
    """MIL's sub-byte packing: indices fill each byte from the least significant bit up."""
    bits = np.unpackbits(np.asarray(packed, dtype=np.uint8), bitorder="little")[: nbits * count]
    weights = 1 << np.arange(nbits, dtype=np.uint32)
    return (bits.reshape(count, nbits).astype(np.uint32) * weights).sum(axis=1)


def _along(param, rank: int, axis: int) -> np.ndarray:
    param = np.asarray(param, dtype=np.float32)
    if param.ndim == 0:
        return param
    shape = [1] * rank
    shape[axis] = param.size
    return param.reshape(shape)


@op()
def constexpr_affine_dequantize(quantized_data, zero_point, scale, axis):
    """iOS16: (q - zero_point) * scale, vectors broadcast along `axis`."""
    q = np.asarray(quantized_data).astype(np.float32)
    axis = axis_of(axis, q.ndim)
    return (q - _along(zero_point, q.ndim, axis)) * _along(scale, q.ndim, axis)


@op()
def constexpr_blockwise_shift_scale(data, scale, offset=None):
    """iOS18: scale * (data - offset), each scale entry covering a block of data."""
    data = np.asarray(data).astype(np.float32)
    scale = np.asarray(scale, dtype=np.float32)
    blocks = [d // s for d, s in zip(data.shape, scale.shape)]

    def expand(p):
        p = np.asarray(p, dtype=np.float32)
        for axis, size in enumerate(blocks):
            p = np.repeat(p, size, axis=axis)
        return p

    return (data - expand(offset) if offset is not None else data) * expand(scale)


@op()
def constexpr_lut_to_dense(indices, lut, shape=None, vector_axis=None):
    if shape is not None:  # iOS16: one palette, indices packed into bytes
        lut = np.asarray(lut, dtype=np.float32)
        nbits = int(math.log2(lut.shape[0]))
        count = int(np.prod(ints(shape)))
        return lut[_unpack_bits(indices, nbits, count)].reshape(ints(shape))
    # iOS18: indices shaped like the output, a palette per block, scalar palettes only
    indices = np.asarray(indices).astype(np.int64)
    lut = np.asarray(lut, dtype=np.float32)
    if lut.shape[-1] != 1:
        raise ValueError(
            "vector palettization (constexpr_lut_to_dense with VECTOR_SIZE > 1) is not supported"
        )
    blocks = [d // s for d, s in zip(indices.shape, lut.shape[: indices.ndim])]
    block = tuple(grid // size for grid, size in zip(np.indices(indices.shape, sparse=True), blocks))
    return lut[..., 0][block + (indices,)]
