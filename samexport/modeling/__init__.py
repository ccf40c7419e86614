"""Model definitions, one file per component (as in segment-anything)."""

from .efficient_sam_encoder import EfficientSamImageEncoder
from .image_encoder import ImageEncoderViT
from .mask_decoder import EfficientSamMaskDecoder, MaskDecoder
from .prompt_encoder import EfficientSamPromptEncoder, PromptEncoder
from .rapsam import RapSam
from .repvit import RepViT
from .resnet import ResNet50
from .sam import EfficientSam, Sam
from .tiny_vit import TinyViT

__all__ = [
    "EfficientSam",
    "EfficientSamImageEncoder",
    "EfficientSamMaskDecoder",
    "EfficientSamPromptEncoder",
    "ImageEncoderViT",
    "MaskDecoder",
    "PromptEncoder",
    "RapSam",
    "RepViT",
    "ResNet50",
    "Sam",
    "TinyViT",
]
