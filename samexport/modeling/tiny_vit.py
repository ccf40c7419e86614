"""TinyViT-5M image encoder of MobileSAM.

Input (B, 3, 1024, 1024) normalized image -> (B, 256, 64, 64) embedding. Like the
official encoder it only accepts 1024x1024 input (the token grids are fixed).
"""

from __future__ import annotations

import itertools
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .common import Conv2d_BN, SamNeck


class PatchEmbed(nn.Module):
    """Two stride-2 Conv2d_BN with GELU between: (B, 3, H, W) -> (B, C, H/4, W/4)."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            Conv2d_BN(in_chans, embed_dim // 2, 3, 2, 1),
            nn.GELU(),
            Conv2d_BN(embed_dim // 2, embed_dim, 3, 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depthwise, 1x1 project, GELU after the sum."""

    def __init__(self, in_chans: int, out_chans: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(in_chans * expand_ratio)
        self.conv1 = Conv2d_BN(in_chans, hidden, 1)
        self.conv2 = Conv2d_BN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.conv3 = Conv2d_BN(hidden, out_chans, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.conv1(x))
        y = F.gelu(self.conv2(y))
        y = self.conv3(y)
        return F.gelu(y + x)


class PatchMerging(nn.Module):
    """(B, C, H, W) or (B, H*W, C) -> (B, H'*W', C_out); stride 1 for the last stage (MobileSAM)."""

    def __init__(self, input_resolution: Tuple[int, int], dim: int, out_dim: int) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        # Official MobileSAM quirk: merging into 320/448/576 channels keeps the resolution.
        stride = 1 if out_dim in (320, 448, 576) else 2
        self.conv1 = Conv2d_BN(dim, out_dim, 1, 1, 0)
        self.conv2 = Conv2d_BN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = Conv2d_BN(out_dim, out_dim, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            h, w = self.input_resolution
            x = x.view(x.shape[0], h, w, -1).permute(0, 3, 1, 2)
        x = F.gelu(self.conv1(x))
        x = F.gelu(self.conv2(x))
        x = self.conv3(x)
        return x.flatten(2).transpose(1, 2)


class ConvLayer(nn.Module):
    """TinyViT stage 0: MBConv blocks on (B, C, H, W), then patch merging to the next stage."""

    def __init__(
        self, dim: int, input_resolution: Tuple[int, int], depth: int, out_dim: int, conv_expand_ratio: float
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, dim, conv_expand_ratio) for _ in range(depth))
        self.downsample = PatchMerging(input_resolution, dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x)


class Mlp(nn.Module):
    """LayerNorm, fc1, GELU, fc2 over (B, N, C) tokens (TinyViT's MLP)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


class Attention(nn.Module):
    """Window attention with learned per-offset biases: (B', N, C) -> (B', N, C)."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, resolution: Tuple[int, int]) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = key_dim**-0.5
        self.key_dim = key_dim
        self.d = key_dim  # attn_ratio 1
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, key_dim * num_heads * 3)
        self.proj = nn.Linear(key_dim * num_heads, dim)
        points = list(itertools.product(range(resolution[0]), range(resolution[1])))
        offsets: dict = {}
        idxs = []
        for p1 in points:
            for p2 in points:
                off = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
                idxs.append(offsets.setdefault(off, len(offsets)))
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        self.register_buffer(
            "attention_bias_idxs", torch.tensor(idxs).view(len(points), len(points)), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        x = self.norm(x)
        q, k, v = (
            self.qkv(x).view(b, n, self.num_heads, -1).split([self.key_dim, self.key_dim, self.d], dim=3)
        )
        q, k, v = q.permute(0, 2, 1, 3), k.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3)
        # Gathered on every call: the official eval-mode cache goes stale when weights are
        # loaded after .eval(); recomputing keeps us equal to the refreshed official model.
        bias = self.attention_biases[:, self.attention_bias_idxs]
        attn = (q @ k.transpose(-2, -1)) * self.scale + bias
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(b, n, self.d * self.num_heads)
        return self.proj(x)


class TinyViTBlock(nn.Module):
    """Padded window attention + residual, 3x3 depthwise local conv, residual MLP."""

    def __init__(
        self, dim: int, input_resolution: Tuple[int, int], num_heads: int, window_size: int, mlp_ratio: float
    ) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        self.window_size = window_size
        self.attn = Attention(dim, dim // num_heads, num_heads, (window_size, window_size))
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = Conv2d_BN(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.input_resolution
        b, n, c = x.shape
        ws = self.window_size
        res_x = x
        x = x.view(b, h, w, c)
        pad_b, pad_r = (ws - h % ws) % ws, (ws - w % ws) % ws
        if pad_b or pad_r:
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))  # zero tokens take part as keys, as officially
        ph, pw = h + pad_b, w + pad_r
        nh, nw = ph // ws, pw // ws
        x = x.view(b, nh, ws, nw, ws, c).transpose(2, 3).reshape(b * nh * nw, ws * ws, c)
        x = self.attn(x)
        x = x.view(b, nh, nw, ws, ws, c).transpose(2, 3).reshape(b, ph, pw, c)
        if pad_b or pad_r:
            x = x[:, :h, :w].contiguous()
        x = res_x + x.view(b, n, c)
        x = x.transpose(1, 2).reshape(b, c, h, w)
        x = self.local_conv(x)
        x = x.view(b, c, n).transpose(1, 2)
        return x + self.mlp(x)


class BasicLayer(nn.Module):
    """TinyViT attention stage: windowed attention blocks then an optional patch merging."""

    def __init__(
        self,
        dim: int,
        input_resolution: Tuple[int, int],
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        out_dim: int,
        downsample: bool,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TinyViTBlock(dim, input_resolution, num_heads, window_size, mlp_ratio) for _ in range(depth)
        )
        self.downsample = PatchMerging(input_resolution, dim, out_dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x) if self.downsample is not None else x


class TinyViT(nn.Module):
    """TinyViT backbone + SAM neck: (B, 3, 1024, 1024) -> (B, 256, 64, 64).

    `norm_head` and `head` (an ImageNet classifier) exist only so the official checkpoint
    loads strictly; the forward pass never uses them.
    """

    def __init__(
        self,
        img_size: int = 1024,
        embed_dims: Sequence[int] = (64, 128, 160, 320),
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (2, 4, 5, 10),
        window_sizes: Sequence[int] = (7, 7, 14, 7),
        mlp_ratio: float = 4.0,
        mbconv_expand_ratio: float = 4.0,
        num_classes: int = 1000,
        out_chans: int = 256,
    ) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(3, embed_dims[0])
        grid = img_size // 4
        self.layers = nn.ModuleList()
        for i, dim in enumerate(embed_dims):
            # The last stage follows a stride-1 merge, so it keeps the previous resolution.
            side = grid // (2 ** (i - 1 if i == 3 else i))
            out_dim = embed_dims[min(i + 1, len(embed_dims) - 1)]
            if i == 0:
                layer: nn.Module = ConvLayer(dim, (side, side), depths[i], out_dim, mbconv_expand_ratio)
            else:
                layer = BasicLayer(
                    dim,
                    (side, side),
                    depths[i],
                    num_heads[i],
                    window_sizes[i],
                    mlp_ratio,
                    out_dim,
                    downsample=i < len(embed_dims) - 1,
                )
            self.layers.append(layer)
        self.out_side = grid // (2 ** (len(embed_dims) - 2))
        self.norm_head = nn.LayerNorm(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes)
        self.neck = SamNeck(embed_dims[-1], out_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        b, _, c = x.shape
        x = x.view(b, self.out_side, self.out_side, c).permute(0, 3, 1, 2)
        return self.neck(x)
