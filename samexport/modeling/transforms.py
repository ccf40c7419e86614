"""The official input pipelines: image preprocessing and prompt coordinate transforms.

SAM-style (RepViT-SAM, MobileSAM, SAM): resize the longest side to 1024 with Pillow's
bilinear filter, normalize with ImageNet statistics on the 0..255 scale, zero-pad bottom and
right after normalizing (so the letterbox is the mean colour in pixel space).
EfficientSAM: scale to [0, 1], stretch to 1024x1024 with non-antialiased bilinear
interpolation, normalize with ImageNet statistics on the 0..1 scale.
SAM 2 (EdgeTAM): stretch to 1024x1024 too, normalize like EfficientSAM; its video predictor resizes the uint8
frame with Pillow's bicubic filter, its image predictor the [0, 1] image with antialiased bilinear; masks are
stretched back with one bilinear resize.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import InputError

IMG_SIZE = 1024
SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)
IMAGENET_MEAN_01 = (0.485, 0.456, 0.406)  # EfficientSAM's and SAM 2's, on the 0..1 scale
IMAGENET_STD_01 = (0.229, 0.224, 0.225)
EFFICIENT_SAM_MAX_POINTS = 6


def check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise InputError(
            f"expected an HxWx3 uint8 RGB numpy array, got {dtype} {shape}; "
            "convert with np.asarray(PIL.Image.open(path).convert('RGB'))"
        )
    return image


def longest_side_shape(h: int, w: int, target: int = IMG_SIZE) -> Tuple[int, int]:
    """(new_h, new_w) with the longest side scaled to `target`, rounded half up."""
    scale = target * 1.0 / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def sam_preprocess(image: np.ndarray, size: int = IMG_SIZE) -> torch.Tensor:
    """HxWx3 uint8 RGB -> (1, 3, size, size) float32."""
    h, w = check_image(image).shape[:2]
    new_h, new_w = longest_side_shape(h, w, size)
    resized = np.array(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))
    x = torch.as_tensor(resized).permute(2, 0, 1).contiguous()[None].float()
    mean = torch.tensor(SAM_PIXEL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(SAM_PIXEL_STD).view(1, 3, 1, 1)
    x = (x - mean) / std
    return F.pad(x, (0, size - new_w, 0, size - new_h))


def efficient_sam_preprocess(image: np.ndarray, size: int = IMG_SIZE) -> torch.Tensor:
    """HxWx3 uint8 RGB -> (1, 3, size, size) float32 (aspect ratio not kept, as officially)."""
    check_image(image)
    x = torch.from_numpy(image.transpose(2, 0, 1).copy())[None].float().div(255)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, (size, size), mode="bilinear", align_corners=False)
    return normalize_01(x)


def normalize_01(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB on the 0..1 scale, normalized with ImageNet statistics."""
    mean = torch.tensor(IMAGENET_MEAN_01).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD_01).view(1, 3, 1, 1)
    return (x - mean) / std


def sam2_image_preprocess(image: np.ndarray, size: int = IMG_SIZE) -> torch.Tensor:
    """HxWx3 uint8 RGB -> (1, 3, size, size) as SAM2ImagePredictor: ToTensor, torchvision Resize((size, size))
    (bilinear, antialiased) on the [0, 1] image, Normalize."""
    x = torch.from_numpy(check_image(image).transpose(2, 0, 1).copy())[None].float() / 255.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return normalize_01(x)


def sam2_video_resize(image: np.ndarray, size: int = IMG_SIZE) -> np.ndarray:
    """HxWx3 uint8 RGB -> size x size x 3 uint8 as SAM 2's video loader resizes it (Pillow's bicubic)."""
    return np.asarray(Image.fromarray(np.ascontiguousarray(check_image(image))).resize((size, size)))


def sam2_video_preprocess(image: np.ndarray, size: int = IMG_SIZE) -> torch.Tensor:
    """HxWx3 uint8 RGB -> (1, 3, size, size) as SAM 2's video loader: the resize, /255 in float64, then
    float32, Normalize."""
    resized = sam2_video_resize(image, size)
    return normalize_01(torch.from_numpy((resized / 255.0).astype(np.float32)).permute(2, 0, 1)[None])


def sam2_postprocess_masks(low_res: torch.Tensor, original_hw: Tuple[int, int]) -> torch.Tensor:
    """(B, K, 256, 256) logits -> (B, K, H, W): one bilinear resize, no crop."""
    return F.interpolate(low_res, tuple(original_hw), mode="bilinear", align_corners=False)


def sam_postprocess_masks(
    low_res: torch.Tensor, original_hw: Tuple[int, int], size: int = IMG_SIZE
) -> torch.Tensor:
    """(B, K, 256, 256) logits -> (B, K, H, W): bilinear to 1024, crop the letterbox, bilinear to H x W."""
    h, w = original_hw
    new_h, new_w = longest_side_shape(h, w, size)
    masks = F.interpolate(low_res, (size, size), mode="bilinear", align_corners=False)
    masks = masks[..., :new_h, :new_w]
    return F.interpolate(masks, (h, w), mode="bilinear", align_corners=False)


def efficient_sam_postprocess_masks(low_res: torch.Tensor, original_hw: Tuple[int, int]) -> torch.Tensor:
    """(B, K, 256, 256) logits -> (B, K, H, W): one bicubic resize, no crop."""
    return F.interpolate(low_res, tuple(original_hw), mode="bicubic", align_corners=False)


def _as_coords(coords) -> np.ndarray:
    arr = np.asarray(coords)
    if arr.shape[-1:] != (2,):
        raise InputError(f"point coordinates must have shape (..., 2) as (x, y), got {arr.shape}")
    return arr


def sam_transform_coords(coords, original_hw: Tuple[int, int], size: int = IMG_SIZE) -> torch.Tensor:
    """(..., 2) pixel (x, y) in the original image -> float32 tensor in the resized frame."""
    h, w = original_hw
    new_h, new_w = longest_side_shape(h, w, size)
    out = _as_coords(coords).astype(np.float64).copy()
    out[..., 0] *= new_w / w
    out[..., 1] *= new_h / h
    return torch.as_tensor(out, dtype=torch.float32)


def efficient_sam_transform_coords(
    coords, original_hw: Tuple[int, int], size: int = IMG_SIZE
) -> torch.Tensor:
    """(..., 2) pixel (x, y) -> float32 tensor in the stretched frame; negative coordinates become -1."""
    h, w = original_hw
    pts = torch.as_tensor(_as_coords(coords), dtype=torch.float32)
    x = torch.where(pts[..., 0] >= 0, pts[..., 0] * size / w, -1.0)
    y = torch.where(pts[..., 1] >= 0, pts[..., 1] * size / h, -1.0)
    return torch.stack([x, y], dim=-1)
