"""EfficientSAM's plain-ViT image encoder (ViT-Ti / ViT-S): global attention, no rel-pos.

Input (B, 3, 1024, 1024) normalized image -> (B, 256, 64, 64) embedding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .common import SamNeck, weighted_values
from .image_encoder import PatchEmbed


class Attention(nn.Module):
    """Multi-head self-attention over (B, N, C) tokens, official EfficientSAM layout (qkv, proj)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj(weighted_values(attn, v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """fc2(GELU(fc1(x))) over (B, N, C) tokens."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class EfficientSamImageEncoder(nn.Module):
    """ViT + SAM neck: (B, 3, 1024, 1024) -> (B, 256, 64, 64).

    `pos_embed` is the official (1, 197, C) table (class slot + 14x14, from 224px
    pretraining), resized bicubically to the token grid. The resize cannot be converted to
    Core ML, so `freeze_pos_embed()` computes it once for the fixed grid and stores it.
    """

    pretrain_grid = 14

    def __init__(
        self,
        embed_dim: int,
        depth: int,
        num_heads: int,
        img_size: int = 1024,
        patch_size: int = 16,
        mlp_ratio: float = 4.0,
        out_chans: int = 256,
    ) -> None:
        super().__init__()
        self.grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, 3, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.pretrain_grid**2 + 1, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.neck = SamNeck(embed_dim, out_chans)
        self.register_buffer("frozen_pos_embed", None, persistent=False)

    def resized_pos_embed(self) -> torch.Tensor:
        """(1, grid, grid, C): the class slot dropped, the rest resized bicubically."""
        frozen = self.frozen_pos_embed
        if frozen is not None:
            return frozen
        pos = self.pos_embed[:, 1:]
        size = int(math.sqrt(pos.shape[1]))
        pos = pos.reshape(1, size, size, -1).permute(0, 3, 1, 2)
        pos = F.interpolate(pos, size=(self.grid, self.grid), mode="bicubic", align_corners=False)
        return pos.permute(0, 2, 3, 1)

    @torch.no_grad()
    def freeze_pos_embed(self) -> None:
        """Store the resized position embedding so the forward pass has no bicubic resize."""
        self.frozen_pos_embed = None
        self.frozen_pos_embed = self.resized_pos_embed().detach().clone()

    def fuse(self) -> "EfficientSamImageEncoder":
        """Deploy form for `reparameterize_model`: the same module with the resize precomputed."""
        self.freeze_pos_embed()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = x + self.resized_pos_embed()
        b, h, w, c = x.shape
        x = x.reshape(b, h * w, c)
        for blk in self.blocks:
            x = blk(x)
        x = x.reshape(b, h, w, c)
        return self.neck(x.permute(0, 3, 1, 2))
