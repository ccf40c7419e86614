"""Mask decoders: SAM's and EfficientSAM's.

Both predict, for every one of 4 mask tokens, low-res mask logits (B, 4, 256, 256) and an
IoU estimate (B, 4). Token 0 is the single-mask output; tokens 1..3 the multimask outputs.
They differ in the upscaling head (LayerNorm2d vs GroupNorm), the MLPs (ReLU vs GELU) and
their parameter names.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from .common import EfficientSamMLP, LayerNorm2d, MLPBlock, SamMLP
from .transformer import TwoWayTransformer


def sam_output_upscaling(transformer_dim: int) -> nn.Sequential:
    """SAM's (and SAM 2's) 4x upscaling of the image tokens: two transposed convs, LayerNorm2d, GELU."""
    return nn.Sequential(
        nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
        LayerNorm2d(transformer_dim // 4),
        nn.GELU(),
        nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
        nn.GELU(),
    )


def masks_from_tokens(mlps: nn.ModuleList, mask_tokens: torch.Tensor, upscaled: torch.Tensor) -> torch.Tensor:
    """Mask tokens (B, K, C) through their hypernetwork MLPs, dotted with the upscaled image (B, c, h, w) ->
    mask logits (B, K, h, w)."""
    hyper_in = torch.stack([mlp(mask_tokens[:, i, :]) for i, mlp in enumerate(mlps)], dim=1)
    b, c, h, w = upscaled.shape
    return (hyper_in @ upscaled.view(b, c, h * w)).view(b, -1, h, w)


class _MaskDecoderBase(nn.Module):
    """The two-way transformer and heads both families share; subclasses define the upscaling."""

    num_mask_tokens = 4

    def upscale(self, src: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor | None = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """image (B or 1, 256, 64, 64), pe (1, 256, 64, 64), tokens (B, N, 256), dense (B or 1, 256, 64, 64)
        or None -> masks (B, 4, 256, 256), IoU (B, 4). One image embedding serves B prompt sets, as in the
        official SamPredictor.predict_torch (which repeats the embedding per prompt set)."""
        # unconditional, so that a traced export keeps B dynamic (a no-op view when the sizes agree)
        image_embeddings = image_embeddings.expand(sparse_prompt_embeddings.size(0), -1, -1, -1)
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        output_tokens = output_tokens.unsqueeze(0).expand(sparse_prompt_embeddings.size(0), -1, -1)
        tokens = torch.cat((output_tokens, sparse_prompt_embeddings), dim=1)
        src = (
            image_embeddings
            if dense_prompt_embeddings is None
            else image_embeddings + dense_prompt_embeddings
        )
        pos_src = image_pe.expand(tokens.shape[0], -1, -1, -1)
        b, c, h, w = src.shape
        hs, src = self.transformer(src, pos_src, tokens)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]
        upscaled = self.upscale(src.transpose(1, 2).reshape(b, c, h, w))
        masks = masks_from_tokens(self.output_hypernetworks_mlps, mask_tokens_out, upscaled)
        return masks, self.iou_prediction_head(iou_token_out)


class MaskDecoder(_MaskDecoderBase):
    """SAM's mask decoder (shared by SAM ViT-B/L/H, MobileSAM and RepViT-SAM)."""

    def __init__(self, transformer_dim: int = 256) -> None:
        super().__init__()
        self.transformer = TwoWayTransformer(lambda: MLPBlock(transformer_dim, 2048, nn.ReLU))
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = sam_output_upscaling(transformer_dim)
        self.output_hypernetworks_mlps = nn.ModuleList(
            SamMLP(transformer_dim, transformer_dim, transformer_dim // 8, 3)
            for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = SamMLP(transformer_dim, 256, self.num_mask_tokens, 3)

    def upscale(self, src: torch.Tensor) -> torch.Tensor:
        return self.output_upscaling(src)


class EfficientSamMaskDecoder(_MaskDecoderBase):
    """EfficientSAM's mask decoder: GELU everywhere, GroupNorm in the upscaler, no dense prompt."""

    def __init__(self, transformer_dim: int = 256, upscaling_layer_dims: Tuple[int, ...] = (64, 32)) -> None:
        super().__init__()
        self.transformer = TwoWayTransformer(
            lambda: EfficientSamMLP(transformer_dim, 2048, transformer_dim, 1), efficient_sam_self_attn=True
        )
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.final_output_upscaling_layers = nn.ModuleList()
        dim = transformer_dim
        for idx, out_dim in enumerate(upscaling_layer_dims):
            last = idx == len(upscaling_layer_dims) - 1
            self.final_output_upscaling_layers.append(
                nn.Sequential(
                    nn.ConvTranspose2d(dim, out_dim, kernel_size=2, stride=2),
                    nn.Identity() if last else nn.GroupNorm(1, out_dim),
                    nn.GELU(),
                )
            )
            dim = out_dim
        self.output_hypernetworks_mlps = nn.ModuleList(
            EfficientSamMLP(transformer_dim, transformer_dim, dim, 2) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = EfficientSamMLP(transformer_dim, 256, self.num_mask_tokens, 2)

    def upscale(self, src: torch.Tensor) -> torch.Tensor:
        for layer in self.final_output_upscaling_layers:
            src = layer(src)
        return src
