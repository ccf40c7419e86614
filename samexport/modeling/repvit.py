"""RepViT-M2.3 image encoder of RepViT-SAM, with its reparameterizable blocks.

Input (B, 3, 1024, 1024) normalized image -> (B, 256, 64, 64) embedding.
"""

from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .common import Conv2d_BN, SamNeck, conv_like, fold_bn

# k, t, c, use_se, use_hs, stride (official RepViT-M2.3 table)
M2_3_CFGS: List[Sequence[int]] = (
    [[3, 2, 80, 1, 0, 1], [3, 2, 80, 0, 0, 1]] * 3
    + [[3, 2, 80, 0, 0, 1]]
    + [[3, 2, 160, 0, 0, 2]]
    + [[3, 2, 160, 1, 0, 1], [3, 2, 160, 0, 0, 1]] * 3
    + [[3, 2, 160, 0, 0, 1]]
    + [[3, 2, 320, 0, 0, 2]]
    + [[3, 2, 320, 1, 0, 1], [3, 2, 320, 0, 0, 1]] * 17
    + [[3, 2, 320, 0, 0, 1]]
    + [[3, 2, 640, 0, 0, 2]]
    + [[3, 2, 640, 1, 0, 1], [3, 2, 640, 0, 0, 1]]
)


def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class SqueezeExcite(nn.Module):
    """timm's SE module as RepViT uses it: fc1 (1x1 conv) -> ReLU -> fc2 -> sigmoid gate."""

    def __init__(self, channels: int, rd_ratio: float = 0.25) -> None:
        super().__init__()
        rd_channels = _make_divisible(channels * rd_ratio)
        self.fc1 = nn.Conv2d(channels, rd_channels, 1, bias=True)
        self.fc2 = nn.Conv2d(rd_channels, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The same mean as x.mean((2, 3)); exported as GlobalAveragePool, which onnxruntime runs in
        # its blocked (NCHWc) layout, saving a layout reorder per SE block.
        s = F.adaptive_avg_pool2d(x, 1)
        s = self.fc2(F.relu(self.fc1(s)))
        return x * torch.sigmoid(s)


class Residual(nn.Module):
    """x + m(x)."""

    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.m(x)

    @torch.no_grad()
    def fuse(self) -> nn.Module:
        """A depthwise Conv2d_BN with its identity folds into one conv; anything else stays."""
        if not isinstance(self.m, Conv2d_BN) or self.m.c.groups != self.m.c.in_channels:
            return self
        conv = self.m.c
        weight, bias = fold_bn(conv.weight, torch.zeros(conv.out_channels), self.m.bn)
        kh, kw = conv.kernel_size
        weight[:, 0, kh // 2, kw // 2] += 1.0
        return conv_like(conv, weight, bias)


class RepVGGDW(nn.Module):
    """bn(dw3x3_bn(x) + dw1x1(x) + x): three branches that fuse into one 3x3 depthwise conv."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = Conv2d_BN(dim, dim, 3, 1, 1, groups=dim)
        self.conv1 = nn.Conv2d(dim, dim, 1, 1, 0, groups=dim)
        self.bn = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn((self.conv(x) + self.conv1(x)) + x)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        conv = self.conv.c
        weight, bias = fold_bn(conv.weight, torch.zeros(conv.out_channels), self.conv.bn)
        weight = weight + F.pad(self.conv1.weight.double(), [1, 1, 1, 1])
        weight[:, 0, 1, 1] += 1.0
        bias = bias + self.conv1.bias.double()
        return conv_like(conv, *fold_bn(weight, bias, self.bn))


class RepViTBlock(nn.Module):
    """Token mixer (RepVGGDW or strided dw conv, optional SE) then a residual channel MLP."""

    def __init__(self, inp: int, oup: int, kernel_size: int, stride: int, use_se: bool) -> None:
        super().__init__()
        if stride == 2:
            # Official RepViT-SAM quirk: the 320->640 "downsample" keeps stride 1 (output stride 16).
            dw_stride = 1 if inp == 320 else 2
            self.token_mixer = nn.Sequential(
                Conv2d_BN(inp, inp, kernel_size, dw_stride, (kernel_size - 1) // 2, groups=inp),
                SqueezeExcite(inp) if use_se else nn.Identity(),
                Conv2d_BN(inp, oup, 1, 1, 0),
            )
        else:
            assert inp == oup, "stride-1 RepViT blocks keep their width"
            self.token_mixer = nn.Sequential(
                RepVGGDW(inp),
                SqueezeExcite(inp) if use_se else nn.Identity(),
            )
        self.channel_mixer = Residual(
            nn.Sequential(
                Conv2d_BN(oup, 2 * oup, 1, 1, 0),
                nn.GELU(),
                Conv2d_BN(2 * oup, oup, 1, 1, 0),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel_mixer(self.token_mixer(x))


class RepViT(nn.Module):
    """RepViT backbone + SAM neck: (B, 3, 1024, 1024) -> (B, 256, 64, 64)."""

    def __init__(self, cfgs: Sequence[Sequence[int]] = M2_3_CFGS, out_chans: int = 256) -> None:
        super().__init__()
        input_channel = cfgs[0][2]
        patch_embed = nn.Sequential(
            Conv2d_BN(3, input_channel // 2, 3, 2, 1),
            nn.GELU(),
            Conv2d_BN(input_channel // 2, input_channel, 3, 2, 1),
        )
        layers: List[nn.Module] = [patch_embed]
        # The expansion ratio t is 2 throughout (channel MLP 2x wide); hs is unused (GELU always).
        for k, _t, c, use_se, _use_hs, s in cfgs:
            output_channel = _make_divisible(c)
            layers.append(RepViTBlock(input_channel, output_channel, k, s, bool(use_se)))
            input_channel = output_channel
        self.features = nn.ModuleList(layers)
        self.neck = SamNeck(input_channel, out_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for f in self.features:
            x = f(x)
        return self.neck(x)
