"""Modulated deformable convolution (DCNv2, mmcv `ModulatedDeformConv2d`) as bilinear sampling.

PyTorch and Core ML compute it as sampling: for every kernel point k = i * kw + j the input is
sampled bilinearly (zeros outside) at the output position's tap plus the learned offset, scaled by
the modulation mask, and the taps meet the weights in one 1x1 convolution. The sampling is
`grid_sample(align_corners=True, padding_mode='zeros')`, which Core ML runs as `resample`; it equals
mmcv's kernel (corners outside the image contribute zero). ONNX exports get the native `DeformConv`
op (opset 19) instead: onnxruntime runs it correctly and faster than the same sampling as `GridSample`
(measured in benchmarks/rapsam.py).

Exporters whose converter has no grid sampling (Core AI's `coreai_torch`) trace it under
`sampling_by_gather()`: the same bilinear taps as explicit row gathers and weights (`gather_bilinear`),
equal to `grid_sample` to float32 rounding (tests/test_rapsam.py).

Offsets use mmcv's interleaved layout: channel 2k is the row (dy) and 2k + 1 the column (dx)
offset of kernel point k.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch import nn


def sampling_grid(
    offset: torch.Tensor, height: int, width: int, kernel_size: int, padding: int
) -> torch.Tensor:
    """(B, 2K, H', W') offsets -> grid (B, K * H', W', 2) of normalised (x, y) for `grid_sample`.

    Sizes are Python ints, so a traced export holds the tap positions as constants."""
    b, _, out_h, out_w = (int(v) for v in offset.shape)
    k = kernel_size
    taps = torch.arange(k, dtype=offset.dtype) - padding
    rows = torch.arange(out_h, dtype=offset.dtype).view(1, 1, out_h, 1) + taps.repeat_interleave(k).view(
        1, k * k, 1, 1
    )
    cols = torch.arange(out_w, dtype=offset.dtype).view(1, 1, 1, out_w) + taps.repeat(k).view(1, k * k, 1, 1)
    offset = offset.view(b, k * k, 2, out_h, out_w)
    y = rows.to(offset.device) + offset[:, :, 0]
    x = cols.to(offset.device) + offset[:, :, 1]
    grid_x = x * (2.0 / max(int(width) - 1, 1)) - 1.0
    grid_y = y * (2.0 / max(int(height) - 1, 1)) - 1.0
    return torch.stack((grid_x, grid_y), dim=-1).reshape(b, k * k * out_h, out_w, 2)


_BY_GATHER: ContextVar[bool] = ContextVar("sampling_by_gather", default=False)


@contextmanager
def sampling_by_gather():
    """Within this block the deformable convolutions sample by `gather_bilinear`."""
    token = _BY_GATHER.set(True)
    try:
        yield
    finally:
        _BY_GATHER.reset(token)


def gather_bilinear(x: torch.Tensor, px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """x (B, C, H, W) sampled bilinearly at pixel positions px, py (B, N, M), zeros outside (what
    `grid_sample(align_corners=True, padding_mode="zeros")` computes) -> (B, C, N, M)."""
    b, c, height, width = (int(v) for v in x.shape)
    rows = x.permute(0, 2, 3, 1).reshape(b * height * width, c)
    x0, y0 = torch.floor(px), torch.floor(py)
    out = None
    for dy in (0, 1):
        for dx in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            weight = (1 - (px - xi).abs()) * (1 - (py - yi).abs())
            inside = (xi >= 0) & (xi <= width - 1) & (yi >= 0) & (yi <= height - 1)
            index = (yi.clamp(0, height - 1) * width + xi.clamp(0, width - 1)).long()
            index = index + (torch.arange(b).view(b, 1, 1) * (height * width))
            tap = torch.index_select(rows, 0, index.reshape(-1)).reshape(*index.shape, c)
            term = tap * (weight * inside.to(x.dtype)).unsqueeze(-1)
            out = term if out is None else out + term
    return out.permute(0, 3, 1, 2)


def modulated_deform_conv(
    x: torch.Tensor, weight: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, padding: int
) -> torch.Tensor:
    """x (B, C, H, W), weight (O, C, k, k), offset (B, 2k^2, H', W'), mask (B, k^2, H', W')
    -> (B, O, H', W')."""
    b, c, height, width = (int(v) for v in x.shape)
    out_h, out_w = (int(v) for v in offset.shape[-2:])
    kernel_size = int(weight.shape[-1])
    taps = kernel_size**2
    grid = sampling_grid(offset, height, width, kernel_size, padding)
    if _BY_GATHER.get():
        px = (grid[..., 0] + 1.0) * (max(width - 1, 1) / 2.0)
        py = (grid[..., 1] + 1.0) * (max(height - 1, 1) / 2.0)
        sampled = gather_bilinear(x, px, py)
    else:
        sampled = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    sampled = sampled.view(b, c, taps, out_h, out_w) * mask.view(b, 1, taps, out_h, out_w)
    return F.conv2d(
        sampled.reshape(b, c * taps, out_h, out_w), weight.reshape(weight.shape[0], c * taps, 1, 1)
    )


class ModulatedDeformConv2d(nn.Module):
    """x (B, C, H, W), offset (B, 2 * kh * kw, H', W'), mask (B, kh * kw, H', W') -> (B, O, H', W').

    One deformable group, groups = 1, stride 1, no bias (what RAP-SAM's neck uses); key `weight`
    (O, C, kh, kw).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, padding: int = 1) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.padding = padding

    def forward(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            return _OnnxDeformConv.apply(x, self.weight, offset, mask, self.padding)
        return modulated_deform_conv(x, self.weight, offset, mask, self.padding)


class _OnnxDeformConv(torch.autograd.Function):
    """Computes like the module; exports as ONNX `DeformConv` (X, W, offset, B = 0, mask)."""

    @staticmethod
    def forward(ctx, x, weight, offset, mask, padding):
        return modulated_deform_conv(x, weight, offset, mask, padding)

    @staticmethod
    def symbolic(g, x, weight, offset, mask, padding):
        out_channels, _, kh, kw = weight.type().sizes()
        bias = g.op("Constant", value_t=torch.zeros(out_channels))
        return g.op(
            "DeformConv",
            x,
            weight,
            offset,
            bias,
            mask,
            kernel_shape_i=[kh, kw],
            pads_i=[padding] * 4,
            strides_i=[1, 1],
            dilations_i=[1, 1],
            group_i=1,
            offset_group_i=1,
        )
