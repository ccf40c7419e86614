"""Prompt encoders: SAM's (points, box corners, mask) and EfficientSAM's (points, box corners).

Both take a flat token list in the 1024x1024 model frame: coords (B, N, 2) as (x, y) and
labels (B, N) with 1 positive, 0 negative, 2/3 box top-left/bottom-right, -1 padding.
Label handling is written as masks and sums (no boolean indexing) so the same code traces.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch
from torch import nn

from .common import LayerNorm2d


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features: coordinates in [0, 1] -> (..., 2 * num_pos_feats)."""

    def __init__(self, num_pos_feats: int = 128) -> None:
        super().__init__()
        # Filled by every checkpoint (and by the fixture fill); zeros keep a meta-device build cheap.
        self.register_buffer("positional_encoding_gaussian_matrix", torch.zeros(2, num_pos_feats))

    def _pe_encoding(self, coords: torch.Tensor) -> torch.Tensor:
        coords = 2 * coords - 1
        coords = coords @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: Tuple[int, int]) -> torch.Tensor:
        """Dense PE at grid cell centres: (C, h, w)."""
        h, w = size
        grid = torch.ones(
            (h, w),
            dtype=self.positional_encoding_gaussian_matrix.dtype,
            device=self.positional_encoding_gaussian_matrix.device,
        )
        y_embed = (grid.cumsum(dim=0) - 0.5) / h
        x_embed = (grid.cumsum(dim=1) - 0.5) / w
        return self._pe_encoding(torch.stack([x_embed, y_embed], dim=-1)).permute(2, 0, 1)

    def forward_with_coords(self, coords: torch.Tensor, image_size: Tuple[int, int]) -> torch.Tensor:
        """Pixel coords (B, N, 2) in an image of (h, w) -> (B, N, C)."""
        x = coords[..., 0] / image_size[1]
        y = coords[..., 1] / image_size[0]
        return self._pe_encoding(torch.stack([x, y], dim=-1))


class PromptEncoder(nn.Module):
    """SAM's prompt encoder: sparse point tokens (B, N, 256) and a dense prompt (B, 256, 64, 64)."""

    def __init__(
        self,
        embed_dim: int = 256,
        image_embedding_size: Tuple[int, int] = (64, 64),
        input_image_size: Tuple[int, int] = (1024, 1024),
        mask_in_chans: int = 16,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = input_image_size
        self.image_embedding_size = image_embedding_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """(1, 256, 64, 64) positional encoding of the image embedding grid."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, N, 2), (B, N) -> (B, N, 256). Padding tokens (-1) get no positional encoding."""
        pe = self.pe_layer.forward_with_coords(coords + 0.5, self.input_image_size)
        labels = labels.unsqueeze(-1)
        emb = pe * (labels != -1)
        emb = emb + self.not_a_point_embed.weight * (labels == -1)
        for i, point_embed in enumerate(self.point_embeddings):
            emb = emb + point_embed.weight * (labels == i)
        return emb

    def embed_mask(self, mask_input: torch.Tensor) -> torch.Tensor:
        """(B, 1, 256, 256) low-res logits -> (B, 256, 64, 64)."""
        return self.mask_downscaling(mask_input)

    def no_mask_dense(self, batch: int) -> torch.Tensor:
        """(B, 256, 64, 64) dense prompt used when no mask is given."""
        h, w = self.image_embedding_size
        return self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, h, w)


class EfficientSamPromptEncoder(nn.Module):
    """EfficientSAM's prompt encoder: (B, N, 2), (B, N) -> (B, N, 256).

    Unlike SAM, padding tokens keep their positional encoding and negative clicks (0) have no
    learned embedding.
    """

    def __init__(
        self,
        embed_dim: int = 256,
        image_embedding_size: Tuple[int, int] = (64, 64),
        input_image_size: Tuple[int, int] = (1024, 1024),
    ) -> None:
        super().__init__()
        self.input_image_size = input_image_size
        self.image_embedding_size = image_embedding_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.invalid_points = nn.Embedding(1, embed_dim)
        self.point_embeddings = nn.Embedding(1, embed_dim)
        self.bbox_top_left_embeddings = nn.Embedding(1, embed_dim)
        self.bbox_bottom_right_embeddings = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        emb = self.pe_layer.forward_with_coords(coords + 0.5, self.input_image_size)
        labels = labels.unsqueeze(-1)
        emb = emb + self.invalid_points.weight * (labels == -1)
        emb = emb + self.point_embeddings.weight * (labels == 1)
        emb = emb + self.bbox_top_left_embeddings.weight * (labels == 2)
        emb = emb + self.bbox_bottom_right_embeddings.weight * (labels == 3)
        return emb
