"""SAM 2's memory attention: the current frame's features attend to the memory bank.

Pre-norm layers: self-attention with rotary position encoding (RoPE) on queries and keys, cross-attention to
the memory tokens (64-d, projected to 256) with RoPE on the queries and on the keys a layout says, a ReLU
FFN; a final LayerNorm. RoPE is real arithmetic over cos/sin tables: channel pairs (2i, 2i+1) rotate, the
first half of the pairs by the token's x, the second half by its y (`axial_rope_angles`).

Memory layout: `slots` spatial memories of `tokens_per_slot` tokens each, then object-pointer tokens (never
rotated). In a slot, the last `rope_tokens_per_slot` tokens rotate by a `key_grid` x `key_grid` table (the
others do not): EdgeTAM's 512-token perceiver memories rotate their 256 2-D latents by a 16x16 table,
SAM 2.1's 4096-token memories all rotate by the 64x64 table. Invalid keys (empty slots) are masked out.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

MASKED_KEY = -1e4  # added to a masked key's attention logits: exp() of it is 0 in float32 and float16


def axial_rope_angles(grid: int, dim: int, theta: float = 10000.0) -> torch.Tensor:
    """(grid*grid, dim // 2) rotation angles of SAM 2's `compute_axial_cis`: token t at x = t % grid,
    y = t // grid; pair i < dim/4 turns by x * f_i, pair dim/4 + i by y * f_i, f_i = theta^(-4i/dim)."""
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 4)[: dim // 4].float() / dim))
    t = torch.arange(grid * grid, dtype=torch.float32)
    x, y = t % grid, torch.div(t, grid, rounding_mode="floor")
    return torch.cat([torch.outer(x, freqs), torch.outer(y, freqs)], dim=-1)


def rope_table(angles: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    return torch.cos(angles), torch.sin(angles)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, N, C) rotated pairwise by tables (N, C // 2): (a, b) -> (a cos - b sin, a sin + b cos)."""
    b, n, c = x.shape
    pairs = x.reshape(b, n, c // 2, 2)
    a, bb = pairs[..., 0], pairs[..., 1]
    return torch.stack((a * cos - bb * sin, a * sin + bb * cos), dim=-1).reshape(b, n, c)


class RoPEAttention(nn.Module):
    """Single-head attention (the only head count SAM 2's memory attention uses) with RoPE tables given
    per call; `kv_in_dim` is the width of keys and values before their projections."""

    def __init__(self, embedding_dim: int = 256, kv_in_dim: Optional[int] = None) -> None:
        super().__init__()
        kv_in_dim = kv_in_dim or embedding_dim
        self.q_proj = nn.Linear(embedding_dim, embedding_dim)
        self.k_proj = nn.Linear(kv_in_dim, embedding_dim)
        self.v_proj = nn.Linear(kv_in_dim, embedding_dim)
        self.out_proj = nn.Linear(embedding_dim, embedding_dim)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        q_rope: Tuple[torch.Tensor, torch.Tensor],
        k_rope: Tuple[torch.Tensor, torch.Tensor],
        key_bias: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        q = apply_rope(self.q_proj(q), *q_rope)
        k = apply_rope(self.k_proj(k), *k_rope)
        v = self.v_proj(v)
        logits = (q @ k.transpose(1, 2)) / math.sqrt(q.shape[-1])
        if key_bias is not None:
            logits = logits + key_bias[:, None, :]
        return self.out_proj(torch.softmax(logits, dim=-1) @ v)


class MemoryAttentionLayer(nn.Module):
    def __init__(self, d_model: int = 256, dim_feedforward: int = 2048, kv_in_dim: int = 64) -> None:
        super().__init__()
        self.self_attn = RoPEAttention(d_model)
        self.cross_attn_image = RoPEAttention(d_model, kv_in_dim)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(self, tgt, memory, memory_pos, q_rope, k_rope, key_bias):
        x = self.norm1(tgt)
        tgt = tgt + self.self_attn(x, x, x, q_rope, q_rope)
        x = self.norm2(tgt)
        tgt = tgt + self.cross_attn_image(x, memory + memory_pos, memory, q_rope, k_rope, key_bias)
        return tgt + self.linear2(F.relu(self.linear1(self.norm3(tgt))))


class MemoryAttention(nn.Module):
    """(curr, curr_pos (B, HW, 256), memory, memory_pos (B, M, 64)) -> (B, HW, 256)."""

    def __init__(
        self,
        num_layers: int,
        tokens_per_slot: int,
        rope_tokens_per_slot: int,
        key_grid: int,
        query_grid: int = 64,
        d_model: int = 256,
        kv_in_dim: int = 64,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(MemoryAttentionLayer(d_model, 2048, kv_in_dim) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.tokens_per_slot = tokens_per_slot
        self.rope_tokens_per_slot = rope_tokens_per_slot
        self.key_grid = key_grid
        self.query_grid = query_grid
        self.d_model = d_model
        # the rotation tables are constants of the graph (not state_dict entries)
        query_cos, query_sin = rope_table(axial_rope_angles(query_grid, d_model))
        slot_cos, slot_sin = rope_table(self.slot_angles())
        for name, table in (
            ("query_cos", query_cos),
            ("query_sin", query_sin),
            ("slot_cos", slot_cos),
            ("slot_sin", slot_sin),
        ):
            self.register_buffer(name, table, persistent=False)

    def slot_angles(self) -> torch.Tensor:
        """(tokens_per_slot, d_model // 2) one memory slot's key rotation angles (0: not rotated)."""
        slot = torch.zeros(self.tokens_per_slot, self.d_model // 2)
        slot[self.tokens_per_slot - self.rope_tokens_per_slot :] = axial_rope_angles(
            self.key_grid, self.d_model
        )
        return slot

    def key_rope(self, slots: int, pointer_tokens: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin) (slots * tokens_per_slot + pointer_tokens, d_model // 2) of the keys: each slot's
        table, then the pointers' (not rotated)."""
        half = self.d_model // 2
        cos = torch.cat([self.slot_cos.repeat(slots, 1), torch.ones(pointer_tokens, half)], dim=0)
        sin = torch.cat([self.slot_sin.repeat(slots, 1), torch.zeros(pointer_tokens, half)], dim=0)
        return cos, sin

    def forward(
        self,
        curr: torch.Tensor,
        curr_pos: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        slots: int,
        pointer_tokens: int,
        key_valid: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        q_rope = (self.query_cos, self.query_sin)
        k_rope = self.key_rope(slots, pointer_tokens)
        key_bias = None if key_valid is None else (1.0 - key_valid) * MASKED_KEY
        output = curr + 0.1 * curr_pos
        for layer in self.layers:
            output = layer(output, memory, memory_pos, q_rope, k_rope, key_bias)
        return self.norm(output)
