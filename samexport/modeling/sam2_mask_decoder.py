"""SAM 2's mask decoder: SAM's two-way transformer with an object-score token and high-resolution skips.

Tokens: [object score, IoU, 4 mask tokens, prompt tokens]. The upscaling adds the stride-8 and stride-4
image features (already projected by `conv_s1` / `conv_s0`, which the image encoder applies once per
image). Outputs for every mask token: low-res logits (B, 4, 256, 256), IoU (B, 4) through a sigmoid,
the mask tokens (B, 4, 256) (object pointers are made from them) and the object-score logit (B, 1).
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from .common import SamMLP
from .mask_decoder import masks_from_tokens, sam_output_upscaling
from .transformer import TwoWayTransformer


class Sam2MaskDecoder(nn.Module):
    num_mask_tokens = 4

    def __init__(self, transformer_dim: int = 256) -> None:
        super().__init__()
        self.transformer = TwoWayTransformer(lambda: SamMLP(transformer_dim, 2048, transformer_dim, 2))
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.obj_score_token = nn.Embedding(1, transformer_dim)
        self.output_upscaling = sam_output_upscaling(transformer_dim)
        self.conv_s0 = nn.Conv2d(transformer_dim, transformer_dim // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(transformer_dim, transformer_dim // 4, kernel_size=1)
        self.output_hypernetworks_mlps = nn.ModuleList(
            SamMLP(transformer_dim, transformer_dim, transformer_dim // 8, 3)
            for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = SamMLP(transformer_dim, 256, self.num_mask_tokens, 3)
        self.pred_obj_score_head = SamMLP(transformer_dim, transformer_dim, 1, 3)

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        feat_s0: torch.Tensor,
        feat_s1: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """image (B, 256, 64, 64), pe (1, 256, 64, 64), tokens (B, N, 256), dense (B, 256, 64, 64),
        feat_s0 (B, 32, 256, 256), feat_s1 (B, 64, 128, 128) -> masks (B, 4, 256, 256), IoU (B, 4),
        mask tokens (B, 4, 256), object-score logits (B, 1)."""
        b = sparse_prompt_embeddings.size(0)
        output_tokens = torch.cat(
            [self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight], dim=0
        )
        tokens = torch.cat((output_tokens.unsqueeze(0).expand(b, -1, -1), sparse_prompt_embeddings), dim=1)
        src = image_embeddings + dense_prompt_embeddings
        pos_src = image_pe.expand(b, -1, -1, -1)
        _, c, h, w = src.shape
        hs, src = self.transformer(src, pos_src, tokens)
        iou_token_out = hs[:, 1, :]
        mask_tokens_out = hs[:, 2 : 2 + self.num_mask_tokens, :]
        dc1, ln1, act1, dc2, act2 = self.output_upscaling
        src = src.transpose(1, 2).reshape(b, c, h, w)
        upscaled = act1(ln1(dc1(src) + feat_s1))
        upscaled = act2(dc2(upscaled) + feat_s0)
        masks = masks_from_tokens(self.output_hypernetworks_mlps, mask_tokens_out, upscaled)
        iou = torch.sigmoid(self.iou_prediction_head(iou_token_out))
        return masks, iou, mask_tokens_out, self.pred_obj_score_head(hs[:, 0, :])
