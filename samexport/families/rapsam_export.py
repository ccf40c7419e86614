"""RAP-SAM's three exported parts, as traceable modules with the exported names and shapes.

- encoder: image (1, 3, Hp, Wp) -> maskFeatures (1, 256, Hp/4, Wp/4)
- prompt decoder: maskFeatures, prompts (1, N, 4) xyxy in the resized frame, resizedSize (2,) = the
  resized, unpadded (h, w) -> maskLogits (1, N, Hp/4, Wp/4), iouScores (1, N, 1)
- panoptic head: maskFeatures -> classLogits (1, 100, 134), maskLogits (1, 100, Hp/4, Wp/4)

Every stage pools under a hard mask (sums over up to Hp/4 x Wp/4 pixels, 1e5 and more) and the
prompt adaptor's softmax spreads over all Hp/4 x Wp/4 pixels: float16 exports keep those ops in
float32 (`samexport.export.coreml_precision`).
"""

from __future__ import annotations

import copy
from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from .base import EncoderForExport

ENCODER_OUTPUTS = ("maskFeatures",)
PROMPT_INPUTS = ("maskFeatures", "prompts", "resizedSize")
PROMPT_OUTPUTS = ("maskLogits", "iouScores")
PANOPTIC_INPUTS = ("maskFeatures",)
PANOPTIC_OUTPUTS = ("classLogits", "maskLogits")


class RapSamEncoder(nn.Module):
    """backbone + neck as one module (the model keeps them apart for the official key layout)."""

    def __init__(self, backbone: nn.Module, neck: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.neck(self.backbone(image))


def encoder_for_export(model: nn.Module, pixel_std: Optional[Sequence[float]] = None) -> nn.Module:
    return EncoderForExport(RapSamEncoder(model.backbone, model.neck), pixel_std).eval()


class PromptDecoderForExport(nn.Module):
    """maskFeatures (1, 256, h, w), prompts (1, N, 4), resizedSize (2,) -> maskLogits, iouScores."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.head = copy.deepcopy(model.panoptic_head)

    def forward(
        self, features: torch.Tensor, prompts: torch.Tensor, resized_size: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.head.decode_prompts(features, prompts, (resized_size[0], resized_size[1]))


class PanopticHeadForExport(nn.Module):
    """maskFeatures (1, 256, h, w) -> classLogits (1, 100, 134), maskLogits (1, 100, h, w)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.head = copy.deepcopy(model.panoptic_head)

    def forward(self, features: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.head.segment_panoptic(features)
