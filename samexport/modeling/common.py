"""Building blocks shared by several encoders and decoders."""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Tuple, Type

import torch
import torch.nn.functional as F
from torch import nn

# Keys per partial sum of attention-weighted values. A float16 device (XNNPACK on ARM, which accumulates a
# matrix product in float16 along its inner dimension) loses a product over 4,096 image keys: MobileSAM's
# decoder came out at 24.5 dB PSNR on the simulated float16 device (`export.float16_device`) and at 25.0 dB
# on a CPU with native float16, EfficientSAM-Ti's encoder (global attention) at 30.8 dB. Sums of 64 keys
# added together are the same values in float32 and keep both above 45 dB.
KEYS_PER_PARTIAL_SUM = 64
_ONE_PRODUCT: ContextVar[bool] = ContextVar("values_in_one_product", default=False)


@contextmanager
def values_in_one_product():
    """Within this block `weighted_values` is one product over every key: for exports whose activations are
    quantized to int8 per tensor (Core ML's w8a8, a8w4), where 64 partial products each quantized lose more
    than the sum they replace (the toy's end-to-end mask IoU under w8a8: 0.893 against the 0.9 floor)."""
    token = _ONE_PRODUCT.set(True)
    try:
        yield
    finally:
        _ONE_PRODUCT.reset(token)


def weighted_values(attn: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """attn (..., Nq, Nk) @ v (..., Nk, d) -> (..., Nq, d); past KEYS_PER_PARTIAL_SUM keys (a multiple of
    it), as partial products over groups of keys summed afterwards (rank 4 at most)."""
    *lead, nq, nk = attn.shape
    group = KEYS_PER_PARTIAL_SUM
    if nk <= group or nk % group or _ONE_PRODUCT.get():
        return attn @ v
    d, groups = v.shape[-1], nk // group
    attn = attn.reshape(-1, nq, groups, group).permute(0, 2, 1, 3)  # (L, G, Nq, group)
    partial = attn @ v.reshape(-1, groups, group, d)  # (L, G, Nq, d)
    return partial.sum(dim=1).reshape(*lead, nq, d)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of an NCHW tensor.

    Written as one `F.layer_norm` over a channels-last view rather than the official
    mean/pow/sqrt sequence: the result is the same in float32, and converters emit a
    single layer_norm op whose variance cannot overflow float16 (the separate `pow`
    reaches 8e4 in the RepViT-SAM neck).
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps
        self.normalized_shape = (num_channels,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def fold_bn(
    weight: torch.Tensor, bias: torch.Tensor, bn: nn.BatchNorm2d
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Kernel and bias of bn(conv(x)) given conv's (weight, bias), computed in float64.

    Folding in float64 and rounding once keeps the fold's own rounding out of the fused weights.
    """
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    shape = (-1,) + (1,) * (weight.ndim - 1)
    return weight.double() * scale.view(shape), bn.bias.double() + (
        bias.double() - bn.running_mean.double()
    ) * scale


def conv_like(conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor) -> nn.Conv2d:
    """A Conv2d with conv's geometry holding the given (float64) weight and bias in conv's dtype."""
    out = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    with torch.no_grad():
        out.weight.copy_(weight)
        out.bias.copy_(bias)
    return out


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """One Conv2d computing bn(conv(x)) in eval mode."""
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    return conv_like(conv, *fold_bn(conv.weight, bias, bn))


class Conv2d_BN(nn.Sequential):
    """Conv2d without bias followed by BatchNorm2d (RepViT and TinyViT); keys `c.*`, `bn.*`."""

    def __init__(
        self, in_ch: int, out_ch: int, ks: int = 1, stride: int = 1, pad: int = 0, groups: int = 1
    ) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(in_ch, out_ch, ks, stride, pad, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(out_ch))

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        return fuse_conv_bn(self.c, self.bn)


class MLPBlock(nn.Module):
    """lin2(act(lin1(x))): SAM's ViT and two-way-transformer MLP."""

    def __init__(self, embedding_dim: int, mlp_dim: int, act: Type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))


class EfficientSamMLP(nn.Module):
    """EfficientSAM's MLP: `num_layers` x (Linear + act), then a plain Linear `fc`."""

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        output_dim: int,
        num_layers: int,
        act: Type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Sequential(nn.Linear(n, hidden_dim), act()) for n in dims_in)
        self.fc = nn.Linear(hidden_dim, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.fc(x)


class SamMLP(nn.Module):
    """SAM's head MLP: Linear layers with ReLU between them (none after the last)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        hidden = [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(
            nn.Linear(n, k) for n, k in zip([input_dim] + hidden, hidden + [output_dim])
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class SamNeck(nn.Sequential):
    """1x1 conv, LayerNorm2d, 3x3 conv, LayerNorm2d: (B, C, 64, 64) -> (B, 256, 64, 64)."""

    def __init__(self, in_ch: int, out_ch: int = 256) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size=1, bias=False),
            LayerNorm2d(out_ch),
            nn.Conv2d(out_ch, out_ch, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_ch),
        )
