"""Whole models: an image encoder plus a family's prompt encoder and mask decoder.

`Sam` serves RepViT-SAM, MobileSAM and SAM ViT-B/L/H; `EfficientSam` serves EfficientSAM.
Each keeps its family's official conventions for preprocessing and prompts.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from . import transforms
from .mask_decoder import EfficientSamMaskDecoder, MaskDecoder
from .prompt_encoder import EfficientSamPromptEncoder, PromptEncoder
from .prompt_rules import SAM_PROMPTS, FixedTokensRule

Tensorish = torch.Tensor | np.ndarray


def _batched(x: Tensorish, dtype: torch.dtype, ndim: int, what: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).to(dtype)
    if t.ndim == ndim - 1:
        t = t.unsqueeze(0)
    if t.ndim != ndim:
        raise InputError(f"{what} must have {ndim - 1} or {ndim} dimensions, got shape {tuple(t.shape)}")
    return t


class _SamBase(nn.Module):
    """What every whole model shares: image encoding and prompt input checks."""

    image_encoder: nn.Module

    @torch.no_grad()
    def encode_image(self, image: np.ndarray) -> torch.Tensor:
        """HxWx3 uint8 RGB -> (1, 256, 64, 64) image embedding."""
        return self.image_encoder(self.preprocess(image))

    def _prompt_inputs(
        self, image_embeddings: Tensorish, coords: Tensorish, labels: Tensorish
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        emb = _batched(image_embeddings, torch.float32, 4, "image embeddings")
        coords_t = _batched(coords, torch.float32, 3, "point coordinates")
        labels_t = _batched(labels, torch.int64, 2, "point labels")
        if coords_t.shape[:2] != labels_t.shape or coords_t.shape[-1] != 2:
            raise InputError(
                f"coords (B, N, 2) and labels (B, N) disagree: {tuple(coords_t.shape)} "
                f"vs {tuple(labels_t.shape)}"
            )
        bad = set(labels_t.unique().tolist()) - {-1, 0, 1, 2, 3}
        if bad:
            raise InputError(f"point labels must be -1, 0, 1, 2 or 3, got {sorted(bad)}")
        return emb, coords_t, labels_t


class Sam(_SamBase):
    """SAM-style model: (1, 256, 64, 64) embeddings + point tokens (+ mask) -> 4 masks and IoUs."""

    prompt_rule = SAM_PROMPTS

    def __init__(self, image_encoder: nn.Module) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = PromptEncoder()
        self.mask_decoder = MaskDecoder()

    @staticmethod
    def preprocess(image: np.ndarray) -> torch.Tensor:
        """HxWx3 uint8 RGB -> (1, 3, 1024, 1024): Pillow resize, normalize, pad with zeros."""
        return transforms.sam_preprocess(image)

    @staticmethod
    def transform_coords(coords: Tensorish, original_hw: Tuple[int, int]) -> torch.Tensor:
        """(..., 2) original-image (x, y) pixels -> model frame, as SamPredictor does."""
        return transforms.sam_transform_coords(coords, original_hw)

    @staticmethod
    def postprocess_masks(low_res: torch.Tensor, original_hw: Tuple[int, int]) -> torch.Tensor:
        """(B, K, 256, 256) logits -> (B, K, H, W) logits at the original size (threshold at 0)."""
        return transforms.sam_postprocess_masks(low_res, original_hw)

    def prompt_tokens(
        self,
        original_hw: Tuple[int, int],
        points: Optional[Tensorish] = None,
        labels: Optional[Tensorish] = None,
        box: Optional[Tensorish] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Clicks and/or a box in original pixels -> the flat token list (1, T, 2), (1, T).

        Order: clicks, then one padding token (0, 0)/-1 only when there is no box, then the
        box corners with labels 2 and 3 (the layout of the official ONNX decoder).
        """
        pts = lab = corners = None
        if points is not None:
            pts = self.transform_coords(points, original_hw).reshape(-1, 2)
            lab = torch.as_tensor(np.asarray(labels), dtype=torch.int64).reshape(-1)
            if len(lab) != len(pts):
                raise InputError(f"{len(pts)} points but {len(lab)} labels")
        if box is not None:
            corners = self.transform_coords(np.asarray(box, dtype=np.float64).reshape(2, 2), original_hw)
        return self.prompt_rule.tokens(pts, lab, corners)

    @torch.no_grad()
    def decode(
        self,
        image_embeddings: Tensorish,
        coords: Tensorish,
        labels: Tensorish,
        mask_input: Optional[Tensorish] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Embeddings (B, 256, 64, 64), coords (B, N, 2) in the model frame, labels (B, N),
        optional mask logits (B, 1, 256, 256) -> low-res logits (B, 4, 256, 256), IoU (B, 4)."""
        emb, coords_t, labels_t = self._prompt_inputs(image_embeddings, coords, labels)
        mask = None
        if mask_input is not None:
            mask = torch.as_tensor(
                np.asarray(mask_input) if not isinstance(mask_input, torch.Tensor) else mask_input,
                dtype=torch.float32,
            )
            if mask.shape[-2:] != (256, 256):
                raise InputError(f"mask_input must be 256x256 low-res logits, got shape {tuple(mask.shape)}")
            mask = mask.reshape(-1, 1, 256, 256)
        return self.decode_tensors(emb, coords_t, labels_t, mask)

    def decode_tensors(
        self,
        emb: torch.Tensor,
        coords: torch.Tensor,
        labels: torch.Tensor,
        mask: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """`decode` without input checks, for tensors already in shape (also on the meta device)."""
        sparse = self.prompt_encoder.embed_points(coords, labels)
        dense = (
            self.prompt_encoder.no_mask_dense(coords.shape[0])
            if mask is None
            else self.prompt_encoder.embed_mask(mask)
        )
        return self.mask_decoder.predict_masks(emb, self.prompt_encoder.get_dense_pe(), sparse, dense)


class EfficientSam(_SamBase):
    """EfficientSAM: (1, 256, 64, 64) embeddings + exactly 6 point tokens -> 4 masks and IoUs."""

    prompt_rule = FixedTokensRule(transforms.EFFICIENT_SAM_MAX_POINTS, -1.0)

    def __init__(self, image_encoder: nn.Module) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = EfficientSamPromptEncoder()
        self.mask_decoder = EfficientSamMaskDecoder()

    @staticmethod
    def preprocess(image: np.ndarray) -> torch.Tensor:
        """HxWx3 uint8 RGB -> (1, 3, 1024, 1024): /255, bilinear stretch, normalize."""
        return transforms.efficient_sam_preprocess(image)

    @staticmethod
    def transform_coords(coords: Tensorish, original_hw: Tuple[int, int]) -> torch.Tensor:
        """(..., 2) original-image (x, y) pixels -> stretched 1024 frame; negatives become -1."""
        return transforms.efficient_sam_transform_coords(coords, original_hw)

    @staticmethod
    def postprocess_masks(low_res: torch.Tensor, original_hw: Tuple[int, int]) -> torch.Tensor:
        """(B, K, 256, 256) logits -> (B, K, H, W) logits at the original size (threshold at 0)."""
        return transforms.efficient_sam_postprocess_masks(low_res, original_hw)

    def prompt_tokens(
        self,
        original_hw: Tuple[int, int],
        points: Optional[Tensorish] = None,
        labels: Optional[Tensorish] = None,
        box: Optional[Tensorish] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Clicks then box corners (labels 2, 3), padded with (-1, -1)/-1 or cut to 6 tokens."""
        pts = lab = corners = None
        if points is not None:
            raw = np.asarray(points, dtype=np.float32).reshape(-1, 2)
            lab = torch.as_tensor(np.asarray(labels, dtype=np.int64).reshape(-1))
            if len(lab) != len(raw):
                raise InputError(f"{len(raw)} points but {len(lab)} labels")
            pts = self.transform_coords(raw, original_hw)
        if box is not None:
            corners = self.transform_coords(np.asarray(box, dtype=np.float32).reshape(2, 2), original_hw)
        if pts is None and corners is None:
            raise InputError("EfficientSAM needs at least one point or a box")
        return self.prompt_rule.tokens(pts, lab, corners)

    @torch.no_grad()
    def decode(
        self,
        image_embeddings: Tensorish,
        coords: Tensorish,
        labels: Tensorish,
        mask_input: Optional[Tensorish] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Embeddings (B, 256, 64, 64), coords (B, N, 2), labels (B, N) -> (B, 4, 256, 256), (B, 4).

        Tokens are padded or cut to 6 as the official model does. EfficientSAM has no mask prompt.
        """
        if mask_input is not None:
            raise InputError("EfficientSAM has no mask prompt; pass mask_input=None")
        emb, coords_t, labels_t = self._prompt_inputs(image_embeddings, coords, labels)
        return self.decode_tensors(emb, coords_t, labels_t)

    def decode_tensors(
        self,
        emb: torch.Tensor,
        coords: torch.Tensor,
        labels: torch.Tensor,
        mask: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """`decode` without input checks, for tensors already in shape (also on the meta device)."""
        coords, labels = self.prompt_rule.padded(coords, labels)
        sparse = self.prompt_encoder.embed_points(coords, labels)
        return self.mask_decoder.predict_masks(emb, self.prompt_encoder.get_dense_pe(), sparse)
