"""RepViT-M1 as timm builds it (`repvit_m1`, legacy blocks) with `features_only`: EdgeTAM's image trunk.

Input (B, 3, 1024, 1024) normalized image -> four feature maps (B, 48, 256, 256), (B, 96, 128, 128),
(B, 192, 64, 64), (B, 384, 32, 32) (strides 4, 8, 16, 32). Keys follow timm's feature wrapper
(`body.stem.*`, `body.stages_0.*`, ...). Unlike RepViT-SAM's blocks, a legacy token mixer has no
BatchNorm after its three-branch sum, and the 1x1 branch has its own BatchNorm.
"""

from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .common import Conv2d_BN, conv_like, fold_bn
from .repvit import SqueezeExcite

M1_WIDTHS = (48, 96, 192, 384)
M1_DEPTHS = (2, 2, 14, 2)


class LegacyRepVggDw(nn.Module):
    """bn(dw3x3(x)) + bn(dw1x1(x)) + x: three branches that fuse into one 3x3 depthwise conv."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = Conv2d_BN(dim, dim, 3, 1, 1, groups=dim)
        self.conv1 = Conv2d_BN(dim, dim, 1, 1, 0, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.conv1(x) + x

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        zeros = torch.zeros(self.conv.c.out_channels)
        weight, bias = fold_bn(self.conv.c.weight, zeros, self.conv.bn)
        weight1, bias1 = fold_bn(self.conv1.c.weight, zeros, self.conv1.bn)
        weight = weight + F.pad(weight1, [1, 1, 1, 1])
        weight[:, 0, 1, 1] += 1.0
        return conv_like(self.conv.c, weight, bias + bias1)


class ChannelMlp(nn.Module):
    """conv2(GELU(conv1(x))), both 1x1 Conv2d_BN (the residual is added by the caller)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = Conv2d_BN(dim, hidden)
        self.act = nn.GELU()
        self.conv2 = Conv2d_BN(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act(self.conv1(x)))


class Block(nn.Module):
    """Token mixer, optional squeeze-excite, then a residual channel MLP."""

    def __init__(self, dim: int, use_se: bool) -> None:
        super().__init__()
        self.token_mixer = LegacyRepVggDw(dim)
        self.se = SqueezeExcite(dim) if use_se else nn.Identity()
        self.channel_mixer = ChannelMlp(dim, 2 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.se(self.token_mixer(x))
        return x + self.channel_mixer(x)


class Downsample(nn.Module):
    """A block without SE, a strided 3x3 depthwise conv, a 1x1 widening conv, and a residual MLP."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.pre_block = Block(dim, use_se=False)
        self.spatial_downsample = Conv2d_BN(dim, dim, 3, 2, 1, groups=dim)
        self.channel_downsample = Conv2d_BN(dim, out_dim)
        self.ffn = ChannelMlp(out_dim, 2 * out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.channel_downsample(self.spatial_downsample(self.pre_block(x)))
        return x + self.ffn(x)


class Stage(nn.Module):
    """An optional downsample, then blocks alternating SE on / off (starting on)."""

    def __init__(self, dim: int, out_dim: int, depth: int, downsample: bool) -> None:
        super().__init__()
        self.downsample = Downsample(dim, out_dim) if downsample else nn.Identity()
        self.blocks = nn.Sequential(*(Block(out_dim, use_se=i % 2 == 0) for i in range(depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class Stem(nn.Module):
    def __init__(self, out_dim: int) -> None:
        super().__init__()
        self.conv1 = Conv2d_BN(3, out_dim // 2, 3, 2, 1)
        self.act1 = nn.GELU()
        self.conv2 = Conv2d_BN(out_dim // 2, out_dim, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act1(self.conv1(x)))


class RepVitFeatures(nn.Module):
    """timm's features_only RepViT: stem + stages, the output of every stage."""

    def __init__(self, widths: Sequence[int], depths: Sequence[int]) -> None:
        super().__init__()
        self.stem = Stem(widths[0])
        dim = widths[0]
        for i, (width, depth) in enumerate(zip(widths, depths)):
            setattr(self, f"stages_{i}", Stage(dim, width, depth, downsample=i > 0))
            dim = width
        self.num_stages = len(widths)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        x = self.stem(x)
        features = []
        for i in range(self.num_stages):
            x = getattr(self, f"stages_{i}")(x)
            features.append(x)
        return features


class RepVitTrunk(nn.Module):
    """EdgeTAM's `TimmBackbone("repvit_m1.dist_in1k")`: (B, 3, H, W) -> features at strides 4..32."""

    def __init__(self, widths: Sequence[int] = M1_WIDTHS, depths: Sequence[int] = M1_DEPTHS) -> None:
        super().__init__()
        self.body = RepVitFeatures(widths, depths)
        self.channel_list = list(widths)[::-1]

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return self.body(x)
