"""The SAM family: RepViT-SAM, MobileSAM and SAM ViT-B/L/H share SAM's prompt encoder and decoder."""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import torch
from PIL import Image

from ...modeling import transforms
from ...modeling.sam import Sam
from ..base import PromptFamily, common_contract
from ..registry import register_family
from ..sam_style import DecoderForExport, SamStyleParts


class SamDecoderForExport(DecoderForExport):
    """SAM decoder with the official ONNX wrapper's inputs.

    imageEmbeddings (1, 256, 64, 64), pointCoords (1, N, 2) in the 1024 frame, pointLabels (1, N)
    float, maskInput (1, 1, 256, 256), hasMaskInput (1,) -> lowResMasks (1, 4, 256, 256),
    iouScores (1, 4). With `packed_points`, coordinates and labels come as one (1, N, 3) input.
    """

    def forward(
        self, image_embeddings: torch.Tensor, *prompt: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        sparse, (mask_input, has_mask_input) = self.sparse_and_rest(prompt)
        has_mask = has_mask_input.reshape(-1, 1, 1, 1)
        no_mask = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        dense = has_mask * self.prompt_encoder.embed_mask(mask_input) + (1 - has_mask) * no_mask
        return self.mask_decoder.predict_masks(image_embeddings, self.dense_pe, sparse, dense)


class SamFamily(SamStyleParts, PromptFamily):
    """Longest side to 1024, letterbox bottom/right with the mean colour, clicks + one padding token
    (none with a box), optional mask prompt; bilinear mask upscaling with a crop."""

    name = "sam"
    decoder_title = "SAM decoder"
    model_class = Sam
    decoder_class = SamDecoderForExport
    pixel_mean_255 = transforms.SAM_PIXEL_MEAN
    pixel_std_255 = transforms.SAM_PIXEL_STD
    mask_prompt = True
    onnx_dynamic_tokens = True

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        return transforms.sam_preprocess(image)

    def transform_coords(self, coords, original_hw: Tuple[int, int]) -> torch.Tensor:
        return transforms.sam_transform_coords(coords, original_hw)

    def postprocess_masks(self, low_res: torch.Tensor, original_hw: Tuple[int, int]) -> torch.Tensor:
        return transforms.sam_postprocess_masks(low_res, original_hw)

    def click_prompts(self, points: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The click then the (0, 0) padding token with label -1, as `SamPredictor.predict_torch` pads."""
        batch = points.shape[0]
        coords = torch.stack([points.float(), torch.zeros(batch, 2)], dim=1)
        labels = torch.tensor([[1, -1]]).expand(batch, 2)
        return coords, labels

    def input_contract(self) -> Dict:
        return {
            **common_contract(),
            "family": self.name,
            "resize": "scale the longest side to 1024 (s = 1024 / max(H, W), new size rounded half up), "
            "Pillow bilinear",
            "pixel_mean": list(self.pixel_mean_255),
            "pixel_std": list(self.pixel_std_255),
            "pixel_scale": "0..255",
            "padding": "bottom and right to 1024x1024 with the mean colour (zeros after normalization)",
            "pad_color_rgb": list(self.pixel_mean_255),
            "coordinate_transform": "x * new_w / W, y * new_h / H",
            "prompt_layout": "clicks, then a (0, 0) token with label -1 when there is no box, "
            "then box corners with labels 2 and 3",
            "mask_upscaling": "bilinear to 1024x1024, crop to new_h x new_w, bilinear to H x W, logits > 0",
            "mask_prompt": "optional 1x1x256x256 low-res logits of a previous prediction",
        }

    def app_canvas(self, image: np.ndarray) -> np.ndarray:
        """Resized to fit, top-left, on the mean colour rounded to 8 bits (124, 116, 104)."""
        h, w = image.shape[:2]
        new_h, new_w = transforms.longest_side_shape(h, w)
        fill = np.array([round(m) for m in self.pixel_mean_255], dtype=np.uint8)
        canvas = np.broadcast_to(fill, (1024, 1024, 3)).copy()
        canvas[:new_h, :new_w] = np.array(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))
        return canvas

    def image_input_text(self) -> str:
        contract = self.input_contract()
        return (
            f"RGB 1024x1024. {contract['resize']}; padding: {contract['padding']} "
            f"(RGB {contract['pad_color_rgb']}). Normalization is inside the model."
        )


SAM = register_family(SamFamily())
