"""SAM 2's memory encoder: a frame's features fused with its mask into a 64-d memory map.

(pix_feat (B, 256, 64, 64), mask (B, 1, 1024, 1024) already scaled to +-10) -> (B, 64, 64, 64). The mask is
downsampled 16x by four stride-2 convs (LayerNorm2d + GELU), added to the projected features, mixed by two
ConvNeXt blocks and projected to 64 channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import LayerNorm2d


class MaskDownSampler(nn.Module):
    def __init__(self, embed_dim: int = 256, layers: int = 4) -> None:
        super().__init__()
        self.encoder = nn.Sequential()
        chans = 1
        for _ in range(layers):
            out = chans * 4
            self.encoder.append(nn.Conv2d(chans, out, kernel_size=3, stride=2, padding=1))
            self.encoder.append(LayerNorm2d(out))
            self.encoder.append(nn.GELU())
            chans = out
        self.encoder.append(nn.Conv2d(chans, embed_dim, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


class CXBlock(nn.Module):
    """ConvNeXt block: 7x7 depthwise conv, LayerNorm, 4x MLP with GELU, layer scale, residual."""

    def __init__(self, dim: int = 256) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = LayerNorm2d(dim)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)
        y = self.gamma * self.pwconv2(F.gelu(self.pwconv1(y)))
        return x + y.permute(0, 3, 1, 2)


class Fuser(nn.Module):
    def __init__(self, dim: int = 256, num_layers: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CXBlock(dim) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    def __init__(self, in_dim: int = 256, out_dim: int = 64) -> None:
        super().__init__()
        self.mask_downsampler = MaskDownSampler(in_dim)
        self.pix_feat_proj = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.fuser = Fuser(in_dim)
        self.out_proj = nn.Conv2d(in_dim, out_dim, kernel_size=1)

    def forward(self, pix_feat: torch.Tensor, mask_for_mem: torch.Tensor) -> torch.Tensor:
        x = self.pix_feat_proj(pix_feat) + self.mask_downsampler(mask_for_mem)
        return self.out_proj(self.fuser(x))
