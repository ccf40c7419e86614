"""RAP-SAM (R50): interactive and panoptic segmentation from one ResNet-50 + deformable neck + query head.

The official pipeline (mmdet test pipeline + `RapSAM.predict`), reproduced exactly:
- `preprocess`: resize to fit (1333, 800) keeping the aspect ratio with OpenCV's INTER_LINEAR on
  uint8, normalise with ImageNet statistics on the 0..255 scale, zero-pad bottom/right to a
  multiple of 32 (1x3x800x1088 for a 640x480 image).
- `image_encoder`: backbone + neck -> mask features (1, 256, Hp/4, Wp/4).
- `prompt_tokens`: every prompt is an xyxy box in the resized, unpadded frame; a click is the
  6x6 box around it. Prompts never see each other (one query each), there are no negative clicks
  and no mask prompt.
- `decode`: prompt queries -> raw mask logits (1, N, Hp/4, Wp/4) and raw IoU (1, N, 1).
- `panoptic`: the 100 object queries -> raw class logits (1, 100, 134) and mask logits.
- `tube`: a tube of frames' mask features -> the video queries' class logits, masks and embeddings.

What an app runs around these (panoptic fusion, near-online video instances) is the family's pipelines,
outside the module: `samexport.families.rapsam.pipelines`.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .prompt_rules import QUERY_PROMPTS
from .rapsam_head import RapSamHead
from .rapsam_neck import YosoNeck
from .resnet import ResNet50
from .transforms import SAM_PIXEL_MEAN, SAM_PIXEL_STD, check_image

RESIZE_SCALE = (1333, 800)  # (long edge, short edge) the test Resize fits into
VIDEO_RESIZE_SCALE = (1280, 736)  # the YouTube-VIS test pipeline's Resize (video instance segmentation)
PAD_DIVISOR = 32
CLICK_HALF_SIZE = 3.0  # a click (x, y) is the box [x - 3, y - 3, x + 3, y + 3] in the resized frame
MASK_STRIDE = 4


def resized_shape(h: int, w: int, fit: Tuple[int, int] = RESIZE_SCALE) -> Tuple[int, int]:
    """(new_h, new_w) of mmcv's keep-ratio rescale to fit (long, short) edges, rounded half up."""
    scale = min(max(fit) / max(h, w), min(fit) / min(h, w))
    return int(h * scale + 0.5), int(w * scale + 0.5)


def resize_scale(original_hw: Tuple[int, int]) -> torch.Tensor:
    """float32 (new_w / W, new_h / H): mmdet rescales boxes by multiplying with it in float32."""
    h, w = original_hw
    new_h, new_w = resized_shape(h, w)
    return torch.tensor([new_w / w, new_h / h], dtype=torch.float32)


def padded_shape(h: int, w: int, divisor: int = PAD_DIVISOR) -> Tuple[int, int]:
    return -(-h // divisor) * divisor, -(-w // divisor) * divisor


def resize_image(image: np.ndarray, new_hw: Tuple[int, int]) -> np.ndarray:
    """OpenCV INTER_LINEAR on uint8 (the official resize: Pillow or torch differ by a grey level)."""
    import cv2

    return cv2.resize(image, (new_hw[1], new_hw[0]), interpolation=cv2.INTER_LINEAR)


def normalize(resized: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 RGB -> (1, 3, H, W) float32, (x - mean) / std on the 0..255 scale."""
    x = torch.as_tensor(resized).permute(2, 0, 1).contiguous()[None].float()
    mean = torch.tensor(SAM_PIXEL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(SAM_PIXEL_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def fitted_shape(
    h: int, w: int, input_hw: Tuple[int, int], fit: Tuple[int, int] = RESIZE_SCALE
) -> Tuple[int, int]:
    """The official resize to `fit` (`resized_shape`), shrunk further when it would not fit a fixed input
    (h, w)."""
    scale = min(max(fit) / max(h, w), min(fit) / min(h, w), input_hw[0] / h, input_hw[1] / w)
    return min(int(h * scale + 0.5), input_hw[0]), min(int(w * scale + 0.5), input_hw[1])


def fixed_input(
    image: np.ndarray, input_hw: Tuple[int, int], fit: Tuple[int, int] = RESIZE_SCALE
) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """HxWx3 uint8 RGB -> ((1, 3, *input_hw) input of a fixed-size export, resized (h, w)): the official
    pipeline (Resize to `fit`) with the padding extended to `input_hw` (identical to `official_input` for
    images whose official padded size is `input_hw`, e.g. 4:3 landscape at 800x1088)."""
    new_hw = fitted_shape(*check_image(image).shape[:2], input_hw, fit)
    x = normalize(resize_image(image, new_hw))
    return F.pad(x, (0, input_hw[1] - new_hw[1], 0, input_hw[0] - new_hw[0])), new_hw


def letterbox_canvas(
    image: np.ndarray, input_hw: Tuple[int, int], fit: Tuple[int, int] = RESIZE_SCALE
) -> np.ndarray:
    """The picture an app hands a fixed-size image input: the official resize to `fit` (shrunk further if
    it would not fit), top-left on the mean colour rounded to 8 bits."""
    new_hw = fitted_shape(*image.shape[:2], input_hw, fit)
    fill = np.array([round(m) for m in SAM_PIXEL_MEAN], dtype=np.uint8)
    canvas = np.broadcast_to(fill, (*input_hw, 3)).copy()
    canvas[: new_hw[0], : new_hw[1]] = resize_image(image, new_hw)
    return canvas


def official_input(
    image: np.ndarray, fit: Tuple[int, int] = RESIZE_SCALE
) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """HxWx3 uint8 RGB -> ((1, 3, Hp, Wp) official network input, resized (h, w) before padding); `fit`:
    the Resize scale (COCO's by default, `VIDEO_RESIZE_SCALE` for video)."""
    h, w = check_image(image).shape[:2]
    new_hw = resized_shape(h, w, fit)
    hp, wp = padded_shape(*new_hw)
    x = normalize(resize_image(image, new_hw))
    return F.pad(x, (0, wp - new_hw[1], 0, hp - new_hw[0])), new_hw


class RapSam(nn.Module):
    """Backbone (`backbone.*`), neck (`neck.*`) and query head (`panoptic_head.*`)."""

    prompt_rule = QUERY_PROMPTS

    def __init__(self, backbone: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.backbone = backbone if backbone is not None else ResNet50()
        self.neck = YosoNeck()
        self.panoptic_head = RapSamHead()
        self.last_resized_hw: Optional[Tuple[int, int]] = None
        self.has_classifier = True
        self.has_video_classifier = True

    # -- image ---------------------------------------------------------------------------------
    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """HxWx3 uint8 RGB -> (1, 3, Hp, Wp) official input; remembers the resized (h, w) for `decode`."""
        x, self.last_resized_hw = official_input(image)
        return x

    def image_encoder(self, x: torch.Tensor) -> torch.Tensor:
        """(1, 3, Hp, Wp) -> mask features (1, 256, Hp/4, Wp/4)."""
        return self.neck(self.backbone(x))

    @torch.no_grad()
    def encode_image(self, image: np.ndarray) -> torch.Tensor:
        return self.image_encoder(self.preprocess(image))

    # -- prompts -------------------------------------------------------------------------------
    @staticmethod
    def prompt_tokens(
        original_hw: Tuple[int, int],
        points: Optional[Sequence[Sequence[float]]] = None,
        boxes: Optional[Sequence[Sequence[float]]] = None,
    ) -> torch.Tensor:
        """Clicks (x, y) and boxes (x0, y0, x1, y1) in original pixels -> (1, N, 4) xyxy prompts in
        the resized frame, clicks first: float32 scaling by (new_w / W, new_h / H), clicks +-3."""
        scale = resize_scale(original_hw).repeat(2)
        clicks = _as_rows(points, 2, "points (x, y)")
        box_rows = _as_rows(boxes, 4, "boxes (x0, y0, x1, y1)")
        if not len(clicks) and not len(box_rows):
            raise InputError("give at least one click or box")
        if len(box_rows) and bool((box_rows[:, 2:] < box_rows[:, :2]).any()):
            raise InputError("a box must be (x0, y0, x1, y1) with x1 >= x0 and y1 >= y0")
        half = torch.tensor([-CLICK_HALF_SIZE, -CLICK_HALF_SIZE, CLICK_HALF_SIZE, CLICK_HALF_SIZE])
        clicks = clicks.repeat(1, 2) * scale + half
        return torch.cat([clicks, box_rows * scale])[None]

    def _resized_hw(self, image_size: Optional[Tuple[int, int]]) -> Tuple[int, int]:
        if image_size is not None:
            return tuple(int(v) for v in image_size)
        if self.last_resized_hw is None:
            raise InputError(
                "decode needs the resized, unpadded image size: pass image_size=(h, w) "
                "or call preprocess first"
            )
        return self.last_resized_hw

    @torch.no_grad()
    def decode(
        self, features: torch.Tensor, prompts: torch.Tensor, image_size: Optional[Tuple[int, int]] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """features (1, 256, h, w), prompts (1, N, 4) -> mask logits (1, N, h, w), raw IoU (1, N, 1).

        `image_size` is the resized, unpadded (h, w) the prompts are normalised by (800 x 1067 for a
        640x480 image); by default the size recorded by the last `preprocess`.
        """
        prompts = torch.as_tensor(prompts, dtype=torch.float32)
        if prompts.ndim != 3 or prompts.shape[-1] != 4:
            raise InputError(f"prompts must be (1, N, 4) xyxy boxes, got shape {tuple(prompts.shape)}")
        return self.panoptic_head.decode_prompts(features, prompts, self._resized_hw(image_size))

    @torch.no_grad()
    def panoptic(self, features: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """features (1, 256, h, w) -> class logits (1, 100, 134) (column 133 = no object, always 0) and
        mask logits (1, 100, h, w), both raw."""
        self.require_classifier()
        return self.panoptic_head.segment_panoptic(features)

    def require_classifier(self) -> None:
        if not self.has_classifier:
            raise InputError(
                "panoptic segmentation needs the open-vocabulary classifier, which is not in the "
                "checkpoint: pass classifier=<file> (a (133, 17, 768) tensor saved with torch.save; "
                "RAP-SAM's tools/gen_cls.py writes it as ~/.cache/embd/"
                "convnext_large_d_320_CocoPanopticOVDataset.pth)"
            )

    # -- video -------------------------------------------------------------------------------
    @torch.no_grad()
    def tube(self, features: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mask features of T frames (T, 256, h, w) -> one tube: class logits (1, 100, 41) (column 40 = no
        object), mask logits (1, 100, T, h, w) and query embeddings (1, 100, 256), raw."""
        self.require_video_classifier()
        return self.panoptic_head.segment_tube(features)

    def require_video_classifier(self) -> None:
        if not self.has_video_classifier:
            raise InputError(
                "video instance segmentation needs the YouTube-VIS 2019 classifier, which is not in the "
                "checkpoint: pass classifier=<file> (a (40, 17, 768) tensor saved with torch.save; RAP-SAM's "
                "tools/gen_cls.py writes it as ~/.cache/embd/convnext_large_d_320_YouTubeVISDataset_2019.pth)"
            )

    # -- masks ---------------------------------------------------------------------------------
    def postprocess_masks(
        self,
        logits: torch.Tensor,
        original_hw: Tuple[int, int],
        resized_hw: Optional[Tuple[int, int]] = None,
    ) -> torch.Tensor:
        """(B, N, h, w) stride-4 logits -> (B, N, H, W) logits at the original size (threshold at 0):
        bilinear to the padded input, crop the padding, bilinear to H x W (`RapSAM.predict`)."""
        return upscale_masks(logits, original_hw, self._resized_hw(resized_hw))


def upscale_masks(logits: torch.Tensor, original_hw, resized_hw, chunk: int = 16) -> torch.Tensor:
    """Bilinear (align_corners=False) to the padded input size, crop to `resized_hw`, bilinear to
    `original_hw`; `chunk` masks at a time to bound memory."""
    h, w = logits.shape[-2:]
    padded = (h * MASK_STRIDE, w * MASK_STRIDE)
    out = []
    for part in logits.split(chunk, dim=1):
        up = F.interpolate(part, padded, mode="bilinear", align_corners=False)
        up = up[..., : resized_hw[0], : resized_hw[1]]
        out.append(F.interpolate(up, tuple(original_hw), mode="bilinear", align_corners=False))
    return torch.cat(out, dim=1)


def _as_rows(values, width: int, what: str) -> torch.Tensor:
    if values is None:
        return torch.zeros(0, width)
    arr = np.asarray(values, dtype=np.float32)
    if arr.size == 0:
        return torch.zeros(0, width)
    arr = arr.reshape(-1, width) if arr.ndim == 1 and arr.size == width else arr
    if arr.ndim != 2 or arr.shape[1] != width or not np.isfinite(arr).all():
        raise InputError(f"{what} must be finite rows of {width} numbers, got shape {arr.shape}")
    return torch.from_numpy(arr)
