"""Per-op compute precision for float16 ML programs: which ops must stay float32.

- A hard-mask pooling (RAP-SAM's dynamic-convolution stages) is a matmul of a 0/1 mask — `cast` of a
  `greater` — with features: an unnormalised sum over up to H*W pixels that reaches 1e5. It and every op
  it feeds up to and including the next `layer_norm` (which brings values back to unit scale) stay float32.
- A softmax over more than 2**14 keys (RAP-SAM's prompt attention reads all 54,400 feature pixels) gives
  weights near 1/keys, below float16's smallest normal number (6.1e-5): subnormal, or zero where a device
  flushes subnormals (with the fixture weights 99.99% of the weights, 99.98% of the mass). It and the
  matmul that reads its weights stay float32.
- A matrix product summing thousands of terms (EdgeTAM's spatial perceiver and memory attention: a
  weighted sum over 4,096 memory tokens) loses in float16 what the floor needs: with another weight fill
  the perceiver measured 30.4 dB on the simulated float16 device. A part declaring `float32_sums_over` N
  keeps every matmul summing N or more terms float32.

Everything else runs in float16.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

PASS_THROUGH = {"cast", "reshape", "transpose", "expand_dims", "squeeze"}
WIDE_SOFTMAX_KEYS = 2**14  # 1 / 2**14 = 6.1e-5, float16's smallest normal number


def _input_vars(op):
    for value in op.inputs.values():
        for var in value if isinstance(value, (list, tuple)) else (value,):
            if hasattr(var, "op"):
                yield var


def _comes_from(var, is_source: Callable, depth: int = 0) -> bool:
    """`var` is produced by an op `is_source` accepts, possibly through layout ops and casts."""
    op = var.op
    if op is None or depth > 6:
        return False
    if is_source(op):
        return True
    return op.op_type in PASS_THROUGH and any(_comes_from(v, is_source, depth + 1) for v in _input_vars(op))


def is_hard_mask_pool(op) -> bool:
    return op.op_type == "matmul" and any(
        _comes_from(v, lambda source: source.op_type == "greater") for v in _input_vars(op)
    )


def is_wide_softmax(op) -> bool:
    if op.op_type != "softmax":
        return False
    shape, axis = op.inputs["x"].shape, int(op.inputs["axis"].val)
    keys = shape[axis]
    return isinstance(keys, int) and keys > WIDE_SOFTMAX_KEYS


def reads_wide_softmax(op) -> bool:
    return op.op_type == "matmul" and any(_comes_from(v, is_wide_softmax) for v in _input_vars(op))


def sums_terms(op) -> int:
    """How many terms each output of a matmul sums (its inner dimension); 0 for other ops or an unknown
    size."""
    if op.op_type != "matmul":
        return 0
    x = op.inputs["x"]
    transposed = "transpose_x" in op.inputs and bool(op.inputs["transpose_x"].val)
    inner = x.shape[-2] if transposed else x.shape[-1]
    return inner if isinstance(inner, int) else 0


def float32_region(pooling: bool = True, sums_over: Optional[int] = None) -> Callable:
    """An `op_selector` for coremltools' FP16ComputePrecision: False (keep float32) for the ops the module
    docstring names (`pooling`: the hard-mask poolings and wide softmaxes; `sums_over`: the matmuls
    summing that many terms or more), True (float16) for every other op."""
    memo: Dict[str, bool] = {}  # by op name: the pass frees and creates ops, so ids are reused

    def fed_by_pool(op) -> bool:
        key = op.name
        if key not in memo:
            memo[key] = False  # cycles cannot occur in a program; this guards re-entry only
            memo[key] = is_hard_mask_pool(op) or any(
                var.op is not None and var.op.op_type != "layer_norm" and fed_by_pool(var.op)
                for var in _input_vars(op)
            )
        return memo[key]

    def keeps_float32(op) -> bool:
        if sums_over is not None and sums_terms(op) >= sums_over:
            return True
        return pooling and (fed_by_pool(op) or is_wide_softmax(op) or reads_wide_softmax(op))

    return lambda op: not keeps_float32(op)
