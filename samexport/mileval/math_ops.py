"""Elementwise, reduction, normalization and matrix ops (MIL semantics, float32 arithmetic)."""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from .registry import DTYPES, axes_of, op

BINARY = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "real_div": np.divide,
    "pow": np.power,
    "maximum": np.maximum,
    "minimum": np.minimum,
    "floor_div": np.floor_divide,
    "mod": np.mod,
    "equal": np.equal,
    "not_equal": np.not_equal,
    "less": np.less,
    "less_equal": np.less_equal,
    "greater": np.greater,
    "greater_equal": np.greater_equal,
    "logical_and": np.logical_and,
    "logical_or": np.logical_or,
    "logical_xor": np.logical_xor,
}
UNARY = {
    "abs": np.abs,
    "ceil": np.ceil,
    "floor": np.floor,
    "cos": np.cos,
    "sin": np.sin,
    "tan": np.tan,
    "cosh": np.cosh,
    "sinh": np.sinh,
    "tanh": np.tanh,
    "acos": np.arccos,
    "asin": np.arcsin,
    "atan": np.arctan,
    "atanh": np.arctanh,
    "exp": np.exp,
    "exp2": np.exp2,
    "erf": special.erf,
    "sign": np.sign,
    "sqrt": np.sqrt,
    "square": np.square,
    "logical_not": np.logical_not,
    "relu": lambda x: np.maximum(x, 0),
    "sigmoid": special.expit,
    "silu": lambda x: x * special.expit(x),
    "softplus": lambda x: np.logaddexp(x, 0),
    "softsign": lambda x: x / (1 + np.abs(x)),
    "round": np.rint,  # MIL rounds half to even
}


def _binary(fn):
    return lambda x, y: fn(x, y)


def _unary(fn):
    return lambda x: fn(x)


for _name, _fn in BINARY.items():
    op(_name)(_binary(_fn))
for _name, _fn in UNARY.items():
    op(_name)(_unary(_fn))


@op()
def log(x, epsilon=1e-45):
    return np.log(x + epsilon)


@op()
def rsqrt(x, epsilon=1e-12):
    return 1.0 / np.sqrt(x + epsilon)


@op()
def inverse(x, epsilon=1e-4):
    return 1.0 / (x + epsilon)


@op()
def clip(x, alpha, beta):
    return np.minimum(np.maximum(x, alpha), beta)


@op()
def leaky_relu(x, alpha=0.01):
    return np.where(x >= 0, x, alpha * x)


@op()
def gelu(x, mode="EXACT"):
    if mode == "EXACT":
        return 0.5 * x * (1.0 + special.erf(x / math.sqrt(2.0)))
    if mode == "TANH_APPROXIMATION":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    if mode == "SIGMOID_APPROXIMATION":
        return x * special.expit(1.702 * x)
    raise ValueError(f"gelu mode {mode!r} is not defined by MIL")


@op()
def select(cond, a, b):
    return np.where(cond, a, b)


@op()
def cast(x, dtype):
    if dtype not in DTYPES:
        raise ValueError(f"cast to {dtype!r} is not supported")
    # The evaluator keeps floats in float32 and rounds to the declared dtype itself.
    return np.asarray(x).astype(np.float32 if dtype in ("fp16", "fp32", "fp64") else DTYPES[dtype])


# -- reductions and normalization ------------------------------------------------------------
def _reduce(fn):
    def reduce(x, axes=None, keep_dims=False):
        return fn(x, axis=axes_of(axes, np.ndim(x)), keepdims=bool(keep_dims))

    return reduce


for _name, _fn in {
    "reduce_mean": np.mean,
    "reduce_sum": np.sum,
    "reduce_max": np.max,
    "reduce_min": np.min,
    "reduce_prod": np.prod,
}.items():
    op(_name)(_reduce(_fn))


@op()
def reduce_l2_norm(x, axes=None, keep_dims=False):
    return np.sqrt(np.sum(np.square(x), axis=axes_of(axes, np.ndim(x)), keepdims=bool(keep_dims)))


@op()
def reduce_sum_square(x, axes=None, keep_dims=False):
    return np.sum(np.square(x), axis=axes_of(axes, np.ndim(x)), keepdims=bool(keep_dims))


@op()
def softmax(x, axis=-1):
    out = x - x.max(axis=int(axis), keepdims=True)  # one temporary: attention maps reach 200M values
    np.exp(out, out=out)
    out /= out.sum(axis=int(axis), keepdims=True)
    return out


@op()
def layer_norm(x, axes=None, gamma=None, beta=None, epsilon=1e-5):
    axes = axes_of(axes, x.ndim) if axes is not None else tuple(range(x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    centered = x - mean
    var = np.mean(centered * centered, axis=axes, keepdims=True)
    out = centered / np.sqrt(var + np.float32(epsilon))
    # gamma/beta have the shape of x over `axes`, which are trailing in every program we emit.
    if gamma is not None:
        out = out * _trailing(gamma, x.ndim, axes)
    if beta is not None:
        out = out + _trailing(beta, x.ndim, axes)
    return out


def _trailing(param, rank: int, axes) -> np.ndarray:
    shape = [1] * rank
    for axis, size in zip(sorted(axes), np.shape(param)):
        shape[axis] = size
    return np.reshape(param, shape)


@op()
def batch_norm(x, mean, variance, gamma=None, beta=None, epsilon=1e-5):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    out = (x - mean.reshape(shape)) / np.sqrt(variance.reshape(shape) + np.float32(epsilon))
    if gamma is not None:
        out = out * gamma.reshape(shape)
    if beta is not None:
        out = out + beta.reshape(shape)
    return out


# -- linear algebra ------------------------------------------------------------------------------
@op()
def linear(x, weight, bias=None):
    # One 2-D product: NumPy runs an N-D matmul as one small BLAS call per leading index.
    out = np.dot(x.reshape(-1, x.shape[-1]), weight.T).reshape(x.shape[:-1] + (weight.shape[0],))
    return out + bias if bias is not None else out


@op()
def matmul(x, y, transpose_x=False, transpose_y=False):
    if transpose_x and np.ndim(x) >= 2:
        x = np.swapaxes(x, -1, -2)
    if transpose_y and np.ndim(y) >= 2:
        y = np.swapaxes(y, -1, -2)
    # Contiguous operands keep NumPy on BLAS; permuted views would take its slow generic loop.
    return np.matmul(np.ascontiguousarray(x), np.ascontiguousarray(y))
