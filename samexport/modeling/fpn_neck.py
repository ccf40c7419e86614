"""SAM 2's FPN neck and the sine position encodings of SAM 2's image and memory features.

The neck maps a trunk's four feature maps (strides 4, 8, 16, 32) to 256 channels each, adds the
top-down path to the levels in `top_down_levels`, and drops the coarsest level (`scalp`): the
outputs are (B, 256, 256, 256), (B, 256, 128, 128), (B, 256, 64, 64).
"""

from __future__ import annotations

import math
from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def sine_position_encoding(h: int, w: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """(dim, h, w) DETR-style normalized sine encoding as SAM 2's PositionEmbeddingSine computes it:
    positions 1..h and 1..w scaled to (0, 2*pi]; channels [y part, x part], each interleaving sin and cos."""
    half = dim // 2
    y = torch.arange(1, h + 1, dtype=torch.float32).view(h, 1).expand(h, w)
    x = torch.arange(1, w + 1, dtype=torch.float32).view(1, w).expand(h, w)
    eps = 1e-6
    y = y / (y[-1:, :] + eps) * (2 * math.pi)
    x = x / (x[:, -1:] + eps) * (2 * math.pi)
    dim_t = torch.arange(half, dtype=torch.float32)
    dim_t = temperature ** (2 * (dim_t // 2) / half)
    pos_x = x[:, :, None] / dim_t
    pos_y = y[:, :, None] / dim_t
    pos_x = torch.stack((pos_x[:, :, 0::2].sin(), pos_x[:, :, 1::2].cos()), dim=3).flatten(2)
    pos_y = torch.stack((pos_y[:, :, 0::2].sin(), pos_y[:, :, 1::2].cos()), dim=3).flatten(2)
    return torch.cat((pos_y, pos_x), dim=2).permute(2, 0, 1).contiguous()


class FpnNeck(nn.Module):
    """Lateral 1x1 convs (`convs.i.conv`, coarsest first) with a nearest-neighbour top-down path."""

    def __init__(
        self,
        backbone_channel_list: Sequence[int],
        d_model: int = 256,
        top_down_levels: Sequence[int] = (2, 3),
        scalp: int = 1,
    ) -> None:
        super().__init__()
        self.convs = nn.ModuleList()
        for dim in backbone_channel_list:
            lateral = nn.Sequential()
            lateral.add_module("conv", nn.Conv2d(dim, d_model, kernel_size=1))
            self.convs.append(lateral)
        self.top_down_levels = tuple(top_down_levels)
        self.scalp = scalp

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        n = len(self.convs) - 1
        out: List[torch.Tensor] = [xs[0]] * len(xs)
        prev = None
        for i in range(n, -1, -1):
            lateral = self.convs[n - i](xs[i])
            if i in self.top_down_levels and prev is not None:
                prev = lateral + F.interpolate(prev, scale_factor=2.0, mode="nearest")
            else:
                prev = lateral
            out[i] = prev
        return out[: len(out) - self.scalp] if self.scalp else out
