"""Traceable modules that define exactly what an exported encoder or decoder computes.

Kept apart from the model code (as in apple/ml-stable-diffusion): the models stay the official
computation; these wrappers only fix input layouts and fold constant work in.
"""

from __future__ import annotations

import copy
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..modeling.sam import EfficientSam, Sam


def first_rgb_conv(encoder: nn.Module) -> nn.Conv2d:
    """The encoder's first convolution (every supported encoder starts with one on RGB)."""
    for module in encoder.modules():
        if isinstance(module, nn.Conv2d):
            if module.in_channels != 3:
                break
            return module
    raise ValueError("encoder does not start with a 3-channel convolution")


class EncoderForExport(nn.Module):
    """(1, 3, 1024, 1024) -> imageEmbeddings (1, 256, 64, 64).

    With `pixel_std` given, the input is `pixel - mean` on the 0..255 scale (what a Core ML
    ImageType with bias = -mean produces) and 1/std is folded into the first convolution's
    weights, per input channel. The mean is not folded into the bias: the first conv pads
    with zeros, which must keep meaning "the mean colour".
    """

    def __init__(self, image_encoder: nn.Module, pixel_std: Sequence[float] | None = None) -> None:
        super().__init__()
        self.image_encoder = copy.deepcopy(image_encoder)
        if pixel_std is not None:
            conv = first_rgb_conv(self.image_encoder)
            with torch.no_grad():
                std = torch.tensor(pixel_std, dtype=torch.float64).view(1, 3, 1, 1)
                conv.weight.copy_(conv.weight.double() / std)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(image)


class _DecoderForExport(nn.Module):
    """Prompt encoder + mask decoder with the dense image PE stored as a constant."""

    def __init__(self, model: Sam | EfficientSam, packed_points: bool = False) -> None:
        super().__init__()
        self.prompt_encoder = copy.deepcopy(model.prompt_encoder)
        self.mask_decoder = copy.deepcopy(model.mask_decoder)
        self.register_buffer("dense_pe", model.prompt_encoder.get_dense_pe().detach().clone())
        self.packed_points = packed_points

    def sparse_and_rest(self, prompt: Tuple[torch.Tensor, ...]) -> Tuple[torch.Tensor, list]:
        """Sparse prompt tokens from (points (1, N, 3), ...) or (coords, labels, ...); the other inputs."""
        if self.packed_points:
            points, *rest = prompt
            coords, labels = points[..., :2], points[..., 2]
        else:
            coords, labels, *rest = prompt
        return self.prompt_encoder.embed_points(coords, labels), rest


class SamDecoderForExport(_DecoderForExport):
    """SAM decoder with the official ONNX wrapper's inputs.

    imageEmbeddings (1, 256, 64, 64), pointCoords (1, N, 2) in the 1024 frame, pointLabels (1, N)
    float, maskInput (1, 1, 256, 256), hasMaskInput (1,) -> lowResMasks (1, 4, 256, 256),
    iouScores (1, 4). With `packed_points`, coordinates and labels come as one (1, N, 3) input.
    """

    def forward(self, image_embeddings: torch.Tensor, *prompt: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        sparse, (mask_input, has_mask_input) = self.sparse_and_rest(prompt)
        has_mask = has_mask_input.reshape(-1, 1, 1, 1)
        no_mask = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        dense = has_mask * self.prompt_encoder.embed_mask(mask_input) + (1 - has_mask) * no_mask
        return self.mask_decoder.predict_masks(image_embeddings, self.dense_pe, sparse, dense)


class EfficientSamDecoderForExport(_DecoderForExport):
    """EfficientSAM decoder: imageEmbeddings (1, 256, 64, 64) and exactly 6 prompt tokens.

    The official model pads/cuts to 6 tokens internally; exported, the host does it (a ranged
    point count does not convert). Coordinates are already in the 1024 frame, so no x*1024/W
    product can overflow float16. No mask prompt exists for this family.
    """

    def forward(self, image_embeddings: torch.Tensor, *prompt: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        sparse, _ = self.sparse_and_rest(prompt)
        return self.mask_decoder.predict_masks(image_embeddings, self.dense_pe, sparse)


def decoder_feeds(spec, embeddings: np.ndarray, coords: torch.Tensor, labels: torch.Tensor,
                  mask: Optional[torch.Tensor], packed: bool) -> Dict[str, np.ndarray]:
    """Inputs of an exported decoder: `points` (1, N, 3) when packed (Core ML), else `pointCoords` and
    `pointLabels` (ONNX); SAM-style decoders also take the mask prompt and its flag."""
    coords_np = coords.numpy().astype(np.float32)
    labels_np = labels.numpy().astype(np.float32)
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if packed:
        feeds = {"imageEmbeddings": embeddings, "points": np.concatenate([coords_np, labels_np[..., None]], -1)}
    else:
        feeds = {"imageEmbeddings": embeddings, "pointCoords": coords_np, "pointLabels": labels_np}
    if spec.style == "sam":
        feeds["maskInput"] = (mask.numpy() if mask is not None else np.zeros((1, 1, 256, 256))).astype(np.float32)
        feeds["hasMaskInput"] = np.array([1.0 if mask is not None else 0.0], dtype=np.float32)
    return feeds
