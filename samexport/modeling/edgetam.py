"""EdgeTAM: SAM 2's tracker on a RepViT-M1 trunk with a spatial perceiver over its memories.

The module holds the official checkpoint's parameters under the official names and exposes the stateless
steps the tracker chains (the memory bank itself is the caller's, as in the official predictor):

- `encode_image(image (B, 3, 1024, 1024))` -> vision features (B, 256, 64, 64) and the two high-resolution
  maps the decoder adds (B, 32, 256, 256), (B, 64, 128, 128) (already projected by `conv_s0` / `conv_s1`);
- `decode(pix_feat, feat_s0, feat_s1, coords, labels, mask_input)` -> the four mask tokens' low-res logits,
  IoU, object pointers and the object-score logit (a score <= 0 turns masks to -1024, pointers to
  `no_obj_ptr`, as the official heads do);
- `encode_memory(vision_features, mask_logits, binarize)` -> one memory of 512 x 64 tokens;
- `attend_memory(vision_features, memory, memory_pos, slots, pointer_tokens, key_valid)` -> the frame's
  features conditioned on the memory bank.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import transforms
from .common import SamMLP
from .fpn_neck import FpnNeck, sine_position_encoding
from .memory_attention import MemoryAttention
from .memory_encoder import MemoryEncoder
from .perceiver import SpatialPerceiver
from .prompt_encoder import PromptEncoder
from .sam2_mask_decoder import Sam2MaskDecoder
from .timm_repvit import RepVitTrunk

IMAGE_SIZE = 1024
NUM_MASKMEM = 7
NO_OBJ_SCORE = -1024.0
MEM_SIGMOID_SCALE, MEM_SIGMOID_BIAS = 20.0, -10.0


class Sam2ImageEncoder(nn.Module):
    """Trunk + FPN neck (the official `ImageEncoder`): features at strides 4, 8, 16."""

    def __init__(self, trunk: nn.Module) -> None:
        super().__init__()
        self.trunk = trunk
        self.neck = FpnNeck(trunk.channel_list)

    def forward(self, x: torch.Tensor):
        return self.neck(self.trunk(x))


class EdgeTam(nn.Module):
    hidden_dim = 256
    mem_dim = 64
    memory_tokens = 512  # tokens of one memory after the perceiver

    def __init__(self, trunk: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.image_encoder = Sam2ImageEncoder(trunk if trunk is not None else RepVitTrunk())
        self.sam_prompt_encoder = PromptEncoder()
        self.sam_mask_decoder = Sam2MaskDecoder()
        self.memory_attention = MemoryAttention(
            num_layers=2, tokens_per_slot=self.memory_tokens, rope_tokens_per_slot=256, key_grid=16
        )
        self.memory_encoder = MemoryEncoder()
        self.spatial_perceiver = SpatialPerceiver()
        self.obj_ptr_proj = SamMLP(self.hidden_dim, self.hidden_dim, self.hidden_dim, 3)
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(NUM_MASKMEM, 1, 1, self.mem_dim))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, self.hidden_dim))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, self.hidden_dim))
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, self.hidden_dim))
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        # the sine encodings are constants of the graph (not state_dict entries)
        self.register_buffer(
            "vision_sine", sine_position_encoding(64, 64, self.hidden_dim)[None], persistent=False
        )
        self.register_buffer(
            "memory_sine", sine_position_encoding(64, 64, self.mem_dim)[None], persistent=False
        )
        self.register_buffer(
            "latent_sine",
            sine_position_encoding(16, 16, self.mem_dim).flatten(1).transpose(0, 1),
            persistent=False,
        )

    # -- constants ---------------------------------------------------------------------------------------
    def vision_pos(self) -> torch.Tensor:
        """(1, 256, 64, 64) sine encoding of the stride-16 features (memory attention's `curr_pos`)."""
        return self.vision_sine

    def memory_pos(self) -> torch.Tensor:
        """(512, 64) position encoding of one memory: zeros for the 1-D latents, the 16x16 sine encoding
        for the 2-D latents (the temporal encoding is added per slot)."""
        pos_2d = self.latent_sine
        return torch.cat([torch.zeros(self.memory_tokens - pos_2d.shape[0], self.mem_dim), pos_2d], dim=0)

    # -- the stateless steps -----------------------------------------------------------------------------
    def encode_image(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.decoder_features(*self.image_encoder(image))

    def decoder_features(
        self, s4: torch.Tensor, s8: torch.Tensor, s16: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The neck's stride-4, 8, 16 maps -> (vision features, the decoder's two high-resolution skips)."""
        return s16, self.sam_mask_decoder.conv_s0(s4), self.sam_mask_decoder.conv_s1(s8)

    def decode(
        self,
        pix_feat: torch.Tensor,
        feat_s0: torch.Tensor,
        feat_s1: torch.Tensor,
        coords: torch.Tensor,
        labels: torch.Tensor,
        mask_input: Optional[torch.Tensor] = None,
        has_mask: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """pix_feat (B, 256, 64, 64), coords (B, N, 2) in the 1024 frame, labels (B, N) with the padding
        token included, mask_input (B, 1, 256, 256) logits (used where `has_mask` (B,) is 1) ->
        masks (B, 4, 256, 256), IoU (B, 4), object pointers (B, 4, 256), object-score logits (B, 1)."""
        b = pix_feat.shape[0]
        pe = self.sam_prompt_encoder
        sparse = pe.embed_points(coords, labels)
        dense = pe.no_mask_dense(b)
        if mask_input is not None:
            weight = torch.ones(b) if has_mask is None else has_mask
            weight = weight.reshape(b, 1, 1, 1)
            dense = weight * pe.embed_mask(mask_input) + (1 - weight) * dense
        masks, iou, tokens, score = self.sam_mask_decoder.predict_masks(
            pix_feat, pe.get_dense_pe(), sparse, dense, feat_s0, feat_s1
        )
        present = (score > 0).float()
        masks = present[:, :, None, None] * masks + (1 - present[:, :, None, None]) * NO_OBJ_SCORE
        pointers = self.obj_ptr_proj(tokens)
        pointers = present[:, :, None] * pointers + (1 - present[:, :, None]) * self.no_obj_ptr
        return masks, iou, pointers, score

    def encode_memory(
        self, vision_features: torch.Tensor, mask_logits: torch.Tensor, binarize: torch.Tensor
    ) -> torch.Tensor:
        """vision_features (B, 256, 64, 64), mask logits (B, 1, 256, 256), binarize (B,): 1 for masks from
        prompts (thresholded at 0), 0 for tracked ones (sigmoid) -> memory (B, 512, 64)."""
        high_res = F.interpolate(
            mask_logits, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False
        )
        hard = binarize.reshape(-1, 1, 1, 1)
        mask = hard * (high_res > 0).float() + (1 - hard) * torch.sigmoid(high_res)
        features = self.memory_encoder(vision_features, mask * MEM_SIGMOID_SCALE + MEM_SIGMOID_BIAS)
        pos = self.memory_sine.expand(features.shape[0], -1, -1, -1)
        return self.spatial_perceiver(features, pos)

    def attend_memory(
        self,
        vision_features: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        slots: int,
        pointer_tokens: int,
        key_valid: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """vision_features (B, 256, 64, 64), memory and memory_pos (B, slots * 512 + pointer_tokens, 64),
        key_valid (B, M) or None -> (B, 256, 64, 64)."""
        b, c, h, w = vision_features.shape
        curr = vision_features.flatten(2).transpose(1, 2)
        curr_pos = self.vision_pos().flatten(2).transpose(1, 2).expand(b, -1, -1)
        out = self.memory_attention(curr, curr_pos, memory, memory_pos, slots, pointer_tokens, key_valid)
        return out.transpose(1, 2).reshape(b, c, h, w)

    def temporal_encoding(self) -> torch.Tensor:
        """(7, 64): row r is added to a memory r + 1 frames before the current one; row 6 to conditioning
        frames' memories."""
        return self.maskmem_tpos_enc.reshape(NUM_MASKMEM, self.mem_dim)

    # -- the official pipelines' inputs -------------------------------------------------------------------
    @staticmethod
    def preprocess_image(image: np.ndarray) -> torch.Tensor:
        """HxWx3 uint8 RGB -> (1, 3, 1024, 1024) as the official image predictor."""
        return transforms.sam2_image_preprocess(image)

    @staticmethod
    def preprocess_frame(image: np.ndarray) -> torch.Tensor:
        """HxWx3 uint8 RGB -> (1, 3, 1024, 1024) as the official video loader."""
        return transforms.sam2_video_preprocess(image)
