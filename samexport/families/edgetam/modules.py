"""The stateless parts EdgeTAM's tracker chains, as modules with fixed inputs: what every target lowers and
a PyTorch session runs. The memory bank (which memories, which pointers, their temporal rows) is the
tracker's (tracker.py); these take it as fixed-size slot arrays with validity flags.

Names and shapes (S memory slots, P pointer slots, N prompt tokens):
- encoder: image (1, 3, 1024, 1024) normalised (or 0..255 pixels less the mean) -> visionFeatures
  (1, 256, 64, 64), highResFeatures0 (1, 32, 256, 256), highResFeatures1 (1, 64, 128, 128);
- prompt_decoder: pixFeatures, highResFeatures0, highResFeatures1, pointCoords (1, N, 2), pointLabels (1, N)
  (or, packed, points (1, N, 3)), maskInput (1, 1, 256, 256), hasMaskInput (1,), noMemory (1,) ->
  lowResMasks (1, 4, 256, 256), iouScores (1, 4), objectPointers (1, 4, 256), objectScore (1, 1);
- track_decoder: pixFeatures, highResFeatures0, highResFeatures1 -> the same outputs (no prompt: the official
  heads' padding point and no mask);
- memory_attention: visionFeatures, memory (S, 512, 64), memoryTemporal (S, 7) one-hot rows of the temporal
  encoding, memoryValid (S,), objectPointers (P, 256), pointerValid (P,) -> pixFeatures (1, 256, 64, 64);
- memory_encoder: visionFeatures, maskLogits (1, 1, 256, 256), binarize (1,) -> memory (1, 512, 64).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from ...modeling.edgetam import EdgeTam
from ..base import EncoderForExport


class ImageEncoderPart(nn.Module):
    """With `pixel_std`, the input is 0..255 pixels less the mean (a Core ML image input) and 1/std is folded
    into the trunk's first convolution (`EncoderForExport`)."""

    def __init__(self, model: EdgeTam, pixel_std: Optional[Sequence[float]] = None) -> None:
        super().__init__()
        self.model = model
        self.image_encoder = (
            model.image_encoder if pixel_std is None else EncoderForExport(model.image_encoder, pixel_std)
        )

    def forward(self, image: torch.Tensor):
        return self.model.decoder_features(*self.image_encoder(image))


class PromptDecoderPart(nn.Module):
    """With `packed`, the prompt is one (1, N, 3) input of (x, y, label) tokens (Core ML and Core AI)."""

    def __init__(self, model: EdgeTam, packed: bool = False) -> None:
        super().__init__()
        self.model = model
        self.packed = packed

    def forward(self, pix_features, feat_s0, feat_s1, *prompt):
        if self.packed:
            points, mask_input, has_mask, no_memory = prompt
            coords, labels = points[..., :2], points[..., 2]
        else:
            coords, labels, mask_input, has_mask, no_memory = prompt
        pix = pix_features + no_memory.reshape(1, 1, 1, 1) * self.model.no_mem_embed.reshape(1, -1, 1, 1)
        return self.model.decode(pix, feat_s0, feat_s1, coords, labels, mask_input, has_mask)


class TrackDecoderPart(nn.Module):
    """The decoder as the official heads call it on a tracked frame: one point (0, 0) labelled -1 plus the
    padding token (both become `not_a_point_embed`), and no mask prompt."""

    def __init__(self, model: EdgeTam) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("coords", torch.zeros(1, 2, 2))
        self.register_buffer("labels", -torch.ones(1, 2))

    def forward(self, pix_features, feat_s0, feat_s1):
        return self.model.decode(pix_features, feat_s0, feat_s1, self.coords, self.labels)


class MemoryAttentionPart(nn.Module):
    """The memory bank as slots: spatial memories (each with its temporal row), then object pointers split
    into 4 tokens of 64 (EdgeTAM gives pointers no temporal encoding); empty slots are masked out."""

    def __init__(self, model: EdgeTam) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("memory_pos", model.memory_pos())

    def forward(self, vision_features, memory, memory_temporal, memory_valid, pointers, pointer_valid):
        slots, tokens, dim = memory.shape
        tokens_per_pointer = pointers.shape[-1] // dim
        pointer_tokens = pointers.reshape(-1, dim)
        temporal = memory_temporal @ self.model.temporal_encoding()
        memory_pos = (self.memory_pos[None] + temporal[:, None, :]).reshape(1, slots * tokens, dim)
        keys = torch.cat([memory.reshape(1, slots * tokens, dim), pointer_tokens[None]], dim=1)
        pos = torch.cat([memory_pos, torch.zeros_like(pointer_tokens)[None]], dim=1)
        valid = torch.cat(
            [
                memory_valid[:, None].expand(slots, tokens).reshape(-1),
                pointer_valid[:, None].expand(-1, tokens_per_pointer).reshape(-1),
            ]
        )
        return self.model.attend_memory(
            vision_features, keys, pos, slots, pointer_tokens.shape[0], valid[None]
        )


class MemoryEncoderPart(nn.Module):
    def __init__(self, model: EdgeTam) -> None:
        super().__init__()
        self.model = model

    def forward(self, vision_features, mask_logits, binarize):
        return self.model.encode_memory(vision_features, mask_logits, binarize)


def pack_points(coords: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """pointCoords (1, N, 2) and pointLabels (1, N) -> the packed decoder's points (1, N, 3)."""
    return np.concatenate([coords, labels[..., None]], axis=-1).astype(np.float32)


PART_MODULES = {
    "encoder": ImageEncoderPart,
    "prompt_decoder": PromptDecoderPart,
    "track_decoder": TrackDecoderPart,
    "memory_attention": MemoryAttentionPart,
    "memory_encoder": MemoryEncoderPart,
}


def part_module(model: EdgeTam, part: str, **form) -> nn.Module:
    """The module of `part` over `model` (`form`: the encoder's pixel_std, the decoder's packed)."""
    return PART_MODULES[part](model, **form).eval()
