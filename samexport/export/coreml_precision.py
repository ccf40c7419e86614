"""Per-op compute precision for float16 ML programs: which ops must stay float32.

A hard-mask pooling (RAP-SAM's dynamic-convolution stages) is a matmul of a 0/1 mask — `cast` of a
`greater` — with features: an unnormalised sum over up to H*W pixels that reaches 1e5. It and every
op it feeds up to and including the next `layer_norm` (which brings values back to unit scale) stay
float32; everything else runs in float16.
"""

from __future__ import annotations

from typing import Callable, Dict

PASS_THROUGH = {"cast", "reshape", "transpose", "expand_dims", "squeeze"}


def _is_hard_mask(var, depth: int = 0) -> bool:
    op = var.op
    if op is None or depth > 6:
        return False
    if op.op_type == "greater":
        return True
    return op.op_type in PASS_THROUGH and any(_is_hard_mask(v, depth + 1) for v in _input_vars(op))


def _input_vars(op):
    for value in op.inputs.values():
        for var in value if isinstance(value, (list, tuple)) else (value,):
            if hasattr(var, "op"):
                yield var


def is_hard_mask_pool(op) -> bool:
    return op.op_type == "matmul" and any(_is_hard_mask(v) for v in _input_vars(op))


def float32_region() -> Callable:
    """An `op_selector` for coremltools' FP16ComputePrecision: False (keep float32) for hard-mask pools
    and the ops between them and the next layer_norm, True (float16) for every other op."""
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

    return lambda op: not fed_by_pool(op)
