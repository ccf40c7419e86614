"""Shape and data-movement ops (MIL semantics)."""

from __future__ import annotations

import numpy as np

from .registry import axes_of, axis_of, ints, op


@op(moves="x")
def reshape(x, shape):
    target = ints(shape)
    if len(target) == np.ndim(x):
        target = [np.shape(x)[i] if s == 0 else s for i, s in enumerate(target)]
    return np.reshape(x, target)


@op(moves="x")
def transpose(x, perm):
    return np.transpose(x, ints(perm))


@op(moves="x")
def expand_dims(x, axes):
    rank = np.ndim(x) + len(ints(axes))
    return np.expand_dims(x, tuple(axis_of(a, rank) for a in ints(axes)))


@op(moves="x")
def squeeze(x, axes=None):
    if axes is None:
        return np.squeeze(x)
    return np.squeeze(x, axis=axes_of(axes, np.ndim(x)))


@op(moves="values")
def concat(values, axis, interleave=False):
    axis = int(axis)
    if any(np.ndim(v) == 0 for v in values):  # shape arithmetic concatenates scalars as rank-1 values
        values = [np.atleast_1d(v) for v in values]
    if not interleave:
        return np.concatenate(values, axis=axis)
    # interleave: equal-sized chunks taken one from each input in turn
    stacked = np.stack(values, axis=axis + 1 if axis >= 0 else axis)
    shape = list(np.shape(values[0]))
    shape[axis] *= len(values)
    return stacked.reshape(shape)


@op(moves="values")
def stack(values, axis):
    return np.stack(values, axis=int(axis))


@op(moves="x")
def split(x, axis, num_splits=None, split_sizes=None):
    axis = axis_of(axis, np.ndim(x))
    if split_sizes is not None:
        bounds = np.cumsum(ints(split_sizes))[:-1]
        return tuple(np.split(x, bounds, axis=axis))
    return tuple(np.split(x, int(num_splits), axis=axis))


@op(moves="x")
def slice_by_index(x, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None):
    rank = np.ndim(x)
    begin, end = ints(begin), ints(end)
    stride = ints(stride) if stride is not None else [1] * rank
    begin_mask = [bool(b) for b in np.reshape(begin_mask, -1)] if begin_mask is not None else [False] * rank
    end_mask = [bool(b) for b in np.reshape(end_mask, -1)] if end_mask is not None else [False] * rank
    squeeze = [bool(b) for b in np.reshape(squeeze_mask, -1)] if squeeze_mask is not None else [False] * rank
    index = []
    for i in range(rank):
        if squeeze[i]:
            index.append(begin[i])
        else:
            index.append(
                slice(None if begin_mask[i] else begin[i], None if end_mask[i] else end[i], stride[i])
            )
    return np.asarray(x)[tuple(index)]


@op(moves="x")
def slice_by_size(x, begin, size):
    index = []
    for b, s, dim in zip(ints(begin), ints(size), np.shape(x)):
        b = b + dim if b < 0 else b
        index.append(slice(b, dim if s == -1 else b + s))
    return np.asarray(x)[tuple(index)]


@op()
def pad(x, pad, mode="constant", constant_val=0.0):
    p = ints(pad)
    count = len(p) // 2
    widths = [(0, 0)] * (np.ndim(x) - count) + [(p[2 * i], p[2 * i + 1]) for i in range(count)]
    if mode == "constant":
        return np.pad(x, widths, mode="constant", constant_values=constant_val)
    if mode == "reflect":
        return np.pad(x, widths, mode="reflect")
    if mode == "replicate":
        return np.pad(x, widths, mode="edge")
    raise ValueError(f"pad mode {mode!r} is not defined by MIL")


@op(moves="x")
def crop(x, crop_height, crop_width):
    top, bottom = ints(crop_height)
    left, right = ints(crop_width)
    h, w = np.shape(x)[-2:]
    return np.asarray(x)[..., top : h - bottom, left : w - right]


@op()
def shape(x):
    return np.asarray(np.shape(x), dtype=np.int32)


@op(moves="x")
def gather(x, indices, axis=0, batch_dims=0, validate_indices=False):
    if int(batch_dims) != 0:
        raise ValueError("gather with batch_dims is not used by samexport's programs")
    return np.take(np.asarray(x), np.asarray(indices, dtype=np.int64), axis=int(axis))


@op(moves="x")
def tile(x, reps):
    return np.tile(np.asarray(x), ints(reps))


@op(moves="x")
def identity(x):
    return x
