"""What a device that computes in float16 gets from a part, simulated the same way on every CPU.

Phones run float16 exports in float16 arithmetic (LiteRT's XNNPACK on ARMv8.2, Core ML on the GPU and
the Neural Engine); most hosts do not (XNNPACK's "float16 inference" on an x86 CPU without AVX512-FP16
keeps float16 tensors but computes each op in float32, and the NumPy evaluator of a Core ML program
rounds each op's result). A host's own float16 path therefore proves nothing about the device: MobileSAM's
decoder measured 61 dB there and 25.0 dB on a CPU with native float16 arithmetic.

`Float16Arithmetic` runs a PyTorch module with the device's arithmetic simulated op by op in float32:
every float input and result rounded to float16 (weights included, as the file stores them), and every
matrix product and convolution accumulated in float16 along its inner dimension, one rounding per term,
as XNNPACK's float16 GEMM kernels add each product into a float16 accumulator. Elementwise ops, reductions,
softmax and normalizations compute in float32 and round their result (XNNPACK's float16 reductions keep
a float32 sum). On MobileSAM's decoder this gave 24.5 dB, the native CPU's 25.0 dB; without the
float16 accumulation it gave 65 dB, the emulating host's 61 dB.

The verdict depends only on the part and its cases, never on the CPU that runs it. Parts over
`MAX_SIMULATED_GMACS` are not simulated, and say so.
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

aten = torch.ops.aten

# TinyViT's encoder (39 GMACs at 1024) takes 27 s here, RepViT's (113) and EfficientSAM-Ti's (102) about 2
# minutes; SAM ViT-B's (486) would take over 10.
MAX_SIMULATED_GMACS = 120.0


def rounded(value):
    """A float32 tensor rounded to the nearest float16 (kept as float32); anything else unchanged."""
    if isinstance(value, torch.Tensor) and value.dtype == torch.float32:
        return value.to(torch.float16).to(torch.float32)
    return value


def product_accumulated_in_float16(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a (..., M, K) @ b (..., K, N), adding one product term at a time into a float16 accumulator."""
    columns, rows = a.movedim(-1, 0).contiguous(), b.movedim(-2, 0).contiguous()  # (K, ..., M), (K, ..., N)
    shape = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
    total = torch.empty(shape, dtype=torch.float16)
    term = torch.empty(shape, dtype=torch.float32)
    total.copy_(columns[0].unsqueeze(-1) * rows[0].unsqueeze(-2))
    for k in range(1, a.shape[-1]):
        torch.mul(columns[k].unsqueeze(-1), rows[k].unsqueeze(-2), out=term)
        term.add_(total)
        total.copy_(term)  # the one rounding of this step
    return total.to(torch.float32)


def convolution_accumulated_in_float16(
    x, weight, bias, stride, padding, dilation, transposed, output_padding, groups
) -> torch.Tensor:
    """`aten.convolution` with each output a float16-accumulated sum over its input channels and taps:
    2-D convolutions as a product over unfolded patches (one group at a time), transposed ones one input
    channel at a time (the taps that reach one output pixel from one channel sum in float32)."""
    if transposed or x.dim() != 4:
        per_group = weight.shape[0] // groups if transposed else weight.shape[1]
        total = None
        for c in range(per_group):
            channels = [g * per_group + c for g in range(groups)]
            taps = weight[channels] if transposed else weight[:, c : c + 1]
            term = aten.convolution.default(
                x[:, channels], taps, None, stride, padding, dilation, transposed, output_padding, groups
            )
            total = term if total is None else rounded(total + term)
        total = rounded(total)
    else:
        batch, _, height, width = x.shape
        out_channels, per_group, kh, kw = weight.shape
        out_h = (height + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
        out_w = (width + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
        patches = torch.nn.functional.unfold(x, (kh, kw), dilation, padding, stride)  # (B, C*kh*kw, L)
        patches = patches.reshape(batch, groups, per_group * kh * kw, out_h * out_w)
        kernels = weight.reshape(groups, out_channels // groups, per_group * kh * kw)
        if per_group == 1:  # depthwise: kh x kw taps per output, added elementwise
            total = None
            for tap in range(kh * kw):
                term = kernels[None, :, :, tap : tap + 1] * patches[:, :, tap : tap + 1, :]
                total = term if total is None else rounded(total + term)
            total = rounded(total)
        else:
            total = product_accumulated_in_float16(kernels.unsqueeze(0), patches)  # (B, G, Cout/G, L)
        total = total.reshape(batch, out_channels, out_h, out_w)
    if bias is not None:
        total = rounded(total + bias.reshape(1, -1, *([1] * (total.dim() - 2))))
    return total


class Float16Arithmetic(TorchDispatchMode):
    """Within this mode, ATen ops compute as a float16 device does (see the module's docstring); matrix
    products summing `sums_over` terms or more are a part's float32 regions (`Interface.float32_sums_over`):
    computed in float32, their result rounded."""

    def __init__(self, sums_over: Optional[int] = None) -> None:
        super().__init__()
        self.sums_over = sums_over

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        schema = func._schema
        if any(r.alias_info is not None for r in schema.returns):
            # a view or an in-place op: it acts on the tensor itself (its values are float16 already, as
            # every op's result is), and an in-place result is rounded in place
            out = func(*args, **kwargs)
            written = [a for a, s in zip(args, schema.arguments) if s.alias_info and s.alias_info.is_write]
            for tensor in written:
                if isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32:
                    tensor.copy_(rounded(tensor))
            return out
        args = tree_map(rounded, args)
        if func in (aten.mm.default, aten.bmm.default):
            if self.sums_over is not None and args[0].shape[-1] >= self.sums_over:
                return rounded(func(*args))
            return product_accumulated_in_float16(*args)
        if func is aten.addmm.default:
            bias, a, b = args[:3]
            if self.sums_over is not None and a.shape[-1] >= self.sums_over:
                return rounded(func(*args, **kwargs))
            return rounded(product_accumulated_in_float16(a, b) + bias)
        if func is aten.convolution.default:
            return convolution_accumulated_in_float16(*args)
        return tree_map(rounded, func(*args, **kwargs))


def gmacs(module: torch.nn.Module, inputs) -> float:
    """Multiply-accumulates of one call, in billions (PyTorch's FLOP counter, float32)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*inputs)
    return counter.get_total_flops() / 2e9


def too_costly(part) -> Optional[str]:
    """Why `part` is not simulated (over MAX_SIMULATED_GMACS), or None."""
    module = part.module().eval()
    _, feeds, _ = part.cases(None)[0]
    inputs = [torch.from_numpy(np.asarray(feeds[n], dtype=np.float32)) for n in part.interface.input_names]
    cost = gmacs(module, inputs)
    if cost <= MAX_SIMULATED_GMACS:
        return None
    return (
        f"float16 device arithmetic not simulated: {cost:.0f} GMACs per call, over the "
        f"{MAX_SIMULATED_GMACS:.0f} GMACs the simulation takes"
    )


def simulate(
    module: torch.nn.Module, feeds: Dict[str, np.ndarray], input_names, sums_over: Optional[int] = None
) -> tuple:
    """The module's outputs (a tuple of NumPy arrays) computed with float16 device arithmetic (matrix
    products of `sums_over` terms or more in float32)."""
    inputs = [torch.from_numpy(np.asarray(feeds[n], dtype=np.float32)) for n in input_names]
    with torch.no_grad(), Float16Arithmetic(sums_over):
        values = module(*inputs)
    values = values if isinstance(values, (tuple, list)) else (values,)
    return tuple(v.numpy() for v in values)
