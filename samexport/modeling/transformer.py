"""Two-way transformer of the SAM and EfficientSAM mask decoders.

Tokens (B, N_tokens, 256) and image (B, 256, 64, 64) attend to each other in both directions.
The two families differ in the MLP module (passed as `mlp_factory`) and in the token
self-attention (`efficient_sam_self_attn`, see TwoWayAttentionBlock).
"""

from __future__ import annotations

import math
from typing import Callable, Tuple

import torch
from torch import nn

from .common import weighted_values


class Attention(nn.Module):
    """Attention with optional downscaling of the internal width: q (B, Nq, C), k/v (B, Nk, C)."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.num_heads = num_heads
        internal_dim = embedding_dim // downsample_rate
        self.head_dim = internal_dim // num_heads
        self.q_proj = nn.Linear(embedding_dim, internal_dim)
        self.k_proj = nn.Linear(embedding_dim, internal_dim)
        self.v_proj = nn.Linear(embedding_dim, internal_dim)
        self.out_proj = nn.Linear(internal_dim, embedding_dim)

    def _separate_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q = self._separate_heads(self.q_proj(q))
        k = self._separate_heads(self.k_proj(k))
        v = self._separate_heads(self.v_proj(v))
        attn = q @ k.permute(0, 1, 3, 2)
        attn = torch.softmax(attn / math.sqrt(self.head_dim), dim=-1)
        out = weighted_values(attn, v)
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token->image, MLP on tokens, image->token; post-norm.

    Self-attention differs by family. SAM: q = k = tokens + PE, v = tokens, and the first
    layer (no PE) replaces the tokens instead of adding a residual. EfficientSAM: the PE is
    added to the tokens themselves (so it reaches v and the residual), and the first layer
    skips only that addition.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp: nn.Module,
        attention_downsample_rate: int,
        skip_first_layer_pe: bool,
        efficient_sam_self_attn: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = mlp
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe
        self.efficient_sam_self_attn = efficient_sam_self_attn

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor, key_pe: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.efficient_sam_self_attn:
            if not self.skip_first_layer_pe:
                queries = queries + query_pe
            queries = queries + self.self_attn(q=queries, k=queries, v=queries)
        elif self.skip_first_layer_pe:
            queries = self.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q=q, k=q, v=queries)
        queries = self.norm1(queries)

        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q=q, k=k, v=keys))
        queries = self.norm3(queries + self.mlp(queries))

        q, k = queries + query_pe, keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(q=k, k=q, v=queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """(image (B, C, h, w), image_pe (B, C, h, w), tokens (B, N, C)) -> (tokens, image (B, h*w, C))."""

    def __init__(
        self,
        mlp_factory: Callable[[], nn.Module],
        efficient_sam_self_attn: bool = False,
        depth: int = 2,
        embedding_dim: int = 256,
        num_heads: int = 8,
        attention_downsample_rate: int = 2,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim,
                num_heads,
                mlp_factory(),
                attention_downsample_rate,
                skip_first_layer_pe=(i == 0),
                efficient_sam_self_attn=efficient_sam_self_attn,
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self, image_embedding: torch.Tensor, image_pe: torch.Tensor, point_embedding: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        image_embedding = image_embedding.flatten(2).permute(0, 2, 1)
        image_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries, keys = point_embedding, image_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, image_pe)
        q, k = queries + point_embedding, keys + image_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q=q, k=k, v=keys))
        return queries, keys
