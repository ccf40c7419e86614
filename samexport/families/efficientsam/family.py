"""The EfficientSAM family: its own prompt encoder and decoder, a fixed 6-token prompt, no mask prompt."""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import torch
from PIL import Image
from torch import nn

from ...modeling import transforms
from ...modeling.sam import EfficientSam
from ..base import PromptFamily, common_contract
from ..registry import register_family
from ..sam_style import DecoderForExport, SamStyleParts


class OneGroupNorm(nn.Module):
    """GroupNorm(1, C) written out (mean and variance over C, H, W, then a per-channel affine): the same
    function, and it converts to Core ML with an enumerated batch (coremltools' group_norm and layer_norm
    converters need the normalized shape as constants)."""

    def __init__(self, norm: nn.GroupNorm) -> None:
        super().__init__()
        self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        var = (x - mean).pow(2).mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class EfficientSamDecoderForExport(DecoderForExport):
    """EfficientSAM decoder: imageEmbeddings (1, 256, 64, 64) and exactly 6 prompt tokens.

    The official model pads/cuts to 6 tokens internally; exported, the host does it (a ranged
    point count does not convert). Coordinates are already in the 1024 frame, so no x*1024/W
    product can overflow float16. No mask prompt exists for this family.
    """

    def __init__(self, model: nn.Module, packed_points: bool = False) -> None:
        super().__init__(model, packed_points)
        for name, module in list(self.mask_decoder.named_modules()):
            if isinstance(module, nn.GroupNorm) and module.num_groups == 1:
                self.mask_decoder.set_submodule(name, OneGroupNorm(module))

    def forward(
        self, image_embeddings: torch.Tensor, *prompt: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        sparse, _ = self.sparse_and_rest(prompt)
        return self.mask_decoder.predict_masks(image_embeddings, self.dense_pe, sparse)


class EfficientSamFamily(SamStyleParts, PromptFamily):
    """Stretch to 1024x1024 (no letterbox), 0..1 pixel scale, exactly 6 tokens, bicubic upscaling."""

    name = "efficientsam"
    decoder_title = "EfficientSAM decoder"
    model_class = EfficientSam
    decoder_class = EfficientSamDecoderForExport
    pixel_mean_255 = tuple(255 * m for m in transforms.IMAGENET_MEAN_01)
    pixel_std_255 = tuple(255 * s for s in transforms.IMAGENET_STD_01)
    mask_prompt = False
    onnx_dynamic_tokens = False
    tokens = transforms.EFFICIENT_SAM_MAX_POINTS
    max_prompt_tokens = transforms.EFFICIENT_SAM_MAX_POINTS

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        return transforms.efficient_sam_preprocess(image)

    def transform_coords(self, coords, original_hw: Tuple[int, int]) -> torch.Tensor:
        return transforms.efficient_sam_transform_coords(coords, original_hw)

    def postprocess_masks(self, low_res: torch.Tensor, original_hw: Tuple[int, int]) -> torch.Tensor:
        return transforms.efficient_sam_postprocess_masks(low_res, original_hw)

    everything_refusal = (
        "everything mode is refused for EfficientSAM: the official EfficientSAM package has no automatic "
        "mask generator to reproduce (its grid search lives in a notebook, with no fixture to prove it "
        "against); use a SAM-family model such as tinyvit or repvit"
    )

    def input_contract(self) -> Dict:
        return {
            **common_contract(),
            "family": self.name,
            "resize": "stretch to 1024x1024 (aspect ratio not kept), bilinear, no antialiasing",
            "pixel_mean": list(transforms.IMAGENET_MEAN_01),
            "pixel_std": list(transforms.IMAGENET_STD_01),
            "pixel_scale": "0..1",
            "padding": "none",
            "pad_color_rgb": None,
            "coordinate_transform": "x * 1024 / W, y * 1024 / H; negative coordinates become -1",
            "prompt_layout": "clicks, then box corners with labels 2 and 3, padded with (-1, -1) and "
            "label -1 "
            f"(or cut) to exactly {self.tokens} tokens",
            "mask_upscaling": "bicubic from 256x256 straight to H x W, logits > 0",
            "mask_prompt": None,
        }

    def app_canvas(self, image: np.ndarray) -> np.ndarray:
        return np.array(Image.fromarray(image).resize((1024, 1024), Image.BILINEAR))

    def image_input_text(self) -> str:
        return f"RGB 1024x1024. {self.input_contract()['resize']}. Normalization is inside the model."


EFFICIENT_SAM = register_family(EfficientSamFamily())
