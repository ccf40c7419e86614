"""EdgeTAM's spatial perceiver: a 64x64 memory map compressed to 512 tokens.

(memory (B, 64, 64, 64), its sine position encoding (B, 64, 64, 64)) -> (B, 512, 64): 256 global latents
attend to all 4096 memory tokens (the position encoding added to keys and values), then 256 2-D latents,
each attending only to its own 4x4 window. Every layer: cross-attention, FFN, latent self-attention, FFN
(GELU, no biases); a final LayerNorm. Single head of 64.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn


def feed_forward(dim: int, mult: int = 4) -> nn.Sequential:
    return nn.Sequential(
        nn.LayerNorm(dim),
        nn.Linear(dim, dim * mult, bias=False),
        nn.GELU(),
        nn.Linear(dim * mult, dim, bias=False),
    )


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.softmax((q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1]), dim=-1) @ v


class PerceiverAttention(nn.Module):
    """Latents attend to x (keys and values from x alone; `pos` added to both)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm_x = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(dim, dim * 2, bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)

    def forward(self, latents: torch.Tensor, x: torch.Tensor, pos: Optional[torch.Tensor]) -> torch.Tensor:
        q = self.to_q(self.norm_latents(latents))
        k, v = self.to_kv(self.norm_x(x)).chunk(2, dim=-1)
        if pos is not None:
            k, v = k + pos, v + pos
        return self.to_out(_attend(q, k, v))


class SelfAttention(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(dim, dim * 2, bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        k, v = self.to_kv(x).chunk(2, dim=-1)
        return self.to_out(_attend(self.to_q(x), k, v))


class PerceiverLayer(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.attn = PerceiverAttention(dim)
        self.ff = feed_forward(dim)
        self.self_attn = SelfAttention(dim)
        self.self_ff = feed_forward(dim)

    def forward(
        self, latents: torch.Tensor, x: torch.Tensor, pos: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        latents = latents + self.attn(latents, x, pos)
        latents = latents + self.ff(latents)
        latents = latents + self.self_attn(latents)
        return latents + self.self_ff(latents)


class SpatialPerceiver(nn.Module):
    def __init__(
        self, dim: int = 64, depth: int = 2, num_latents: int = 256, num_latents_2d: int = 256
    ) -> None:
        super().__init__()
        self.latents = nn.Parameter(torch.zeros(num_latents, dim))
        self.latents_2d = nn.Parameter(torch.zeros(num_latents_2d, dim))
        self.layers = nn.ModuleList(PerceiverLayer(dim) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.windows = int(math.isqrt(num_latents_2d))

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """x, pos (B, C, H, W) -> (B, num_latents + num_latents_2d, C): global latents, then 2-D latents
        in row-major window order."""
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        latents = self.latents.unsqueeze(0).repeat(b, 1, 1)  # a copy: a view of a parameter needs grad
        pos_tokens = pos.flatten(2).transpose(1, 2)
        for layer in self.layers:
            latents = layer(latents, tokens, pos_tokens)
        n, s = self.windows, h // self.windows
        # the s x s windows in row-major order, split with tensors of rank <= 4 (LiteRT's GPU delegate limit)
        rows = x.reshape(b * c * n, s, n, s).permute(0, 2, 1, 3).reshape(b, c, n * n, s * s)
        windows = rows.permute(0, 2, 3, 1).reshape(b * n * n, s * s, c)
        latents_2d = self.latents_2d.reshape(-1, 1, c).repeat(b, 1, 1)
        for layer in self.layers:
            latents_2d = layer(latents_2d, windows)
        return self.norm(torch.cat([latents, latents_2d.reshape(b, n * n, c)], dim=1))
