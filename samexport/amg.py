"""The official automatic-mask-generation steps (segment-anything `utils/amg.py` semantics).

Point grids, crop boxes, stability score, boxes from masks, box NMS, the crop-edge filter,
uncropping, run-length encoding and small-region removal, each with the official behaviour on
ties and edges (PROMPTS-README.md, "Official quirks"): strict/non-strict comparisons, inclusive
box maxima, a stable score sort, IoU computed in float32 and suppression only above the threshold.
"""

from __future__ import annotations

import math
import warnings
from itertools import product
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from scipy import ndimage


def build_point_grid(n_per_side: int) -> np.ndarray:
    """(n², 2) normalized (x, y) in [0, 1], cell centres, row-major with x fastest."""
    offset = 1 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs = np.tile(side[None, :], (n_per_side, 1))
    ys = np.tile(side[:, None], (1, n_per_side))
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(n_per_side: int, n_layers: int, scale_per_layer: int) -> List[np.ndarray]:
    """One grid per crop layer; layer i has int(n_per_side / scale_per_layer**i) points per side."""
    return [build_point_grid(int(n_per_side / (scale_per_layer**i))) for i in range(n_layers + 1)]


def generate_crop_boxes(
    image_hw: Tuple[int, int], n_layers: int, overlap_ratio: float
) -> Tuple[List[List[int]], List[int]]:
    """XYXY crop boxes (layer 0 = the whole image, layer i: 2^i per side, x0 outer, y0 inner)
    and the layer of each."""
    h, w = image_hw
    boxes, layers = [[0, 0, w, h]], [0]
    for layer in range(1, n_layers + 1):
        per_side = 2**layer
        overlap = int(overlap_ratio * min(h, w) * (2 / per_side))
        crop_w = int(math.ceil((overlap * (per_side - 1) + w) / per_side))
        crop_h = int(math.ceil((overlap * (per_side - 1) + h) / per_side))
        x0s = [int((crop_w - overlap) * i) for i in range(per_side)]
        y0s = [int((crop_h - overlap) * i) for i in range(per_side)]
        for x0, y0 in product(x0s, y0s):
            boxes.append([x0, y0, min(x0 + crop_w, w), min(y0 + crop_h, h)])
            layers.append(layer)
    return boxes, layers


def stability_score(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """(..., H, W) logits -> (...) float32: |logits > t + offset| / |logits > t - offset| (NaN when
    the union is empty), counted per row in int16 then int32 as the official code does."""
    high = (logits > threshold + offset).sum(-1, dtype=torch.int16).sum(-1, dtype=torch.int32)
    low = (logits > threshold - offset).sum(-1, dtype=torch.int16).sum(-1, dtype=torch.int32)
    return high / low


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(B, H, W) bool -> (B, 4) int64 XYXY with inclusive maxima; [0, 0, 0, 0] for an empty mask."""
    if masks.shape[0] == 0:
        return torch.zeros(0, 4, dtype=torch.int64)
    h, w = masks.shape[-2:]
    rows, cols = masks.any(-1), masks.any(-2)
    empty = ~rows.any(-1)

    def extent(hit: torch.Tensor, size: int) -> Tuple[torch.Tensor, torch.Tensor]:
        index = torch.arange(size)
        low = torch.where(hit, index, size).min(-1).values
        high = torch.where(hit, index, -1).max(-1).values
        return low, high

    y0, y1 = extent(rows, h)
    x0, x1 = extent(cols, w)
    boxes = torch.stack([x0, y0, x1, y1], dim=-1)
    return torch.where(empty[:, None], torch.zeros_like(boxes), boxes)


def box_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices kept by greedy NMS, in decreasing score order (stable among ties).

    torchvision's CPU kernel: areas (x2 - x1) * (y2 - y1) and IoU in float32; a box is suppressed
    only when its IoU with a kept box is greater than the threshold.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    x0, y0, x1, y1 = boxes.T
    areas = (x1 - x0) * (y1 - y0)
    suppressed = np.zeros(len(boxes), dtype=bool)
    keep = []
    threshold = np.float32(iou_threshold)
    for rank, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = order[rank + 1 :]
        rest = rest[~suppressed[rest]]
        width = np.maximum(np.float32(0), np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]))
        height = np.maximum(np.float32(0), np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]))
        inter = width * height
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = inter / (areas[i] + areas[rest] - inter)
        suppressed[rest[iou > threshold]] = True
    return np.asarray(keep, dtype=np.int64)


def near_crop_edge(
    boxes: torch.Tensor, crop_box: Sequence[int], image_box: Sequence[int], atol: float = 20.0
) -> torch.Tensor:
    """(B, 4) XYXY boxes in the crop frame -> (B,) True where a side lies within `atol` of a crop
    edge that is not also an image edge."""
    x0, y0 = crop_box[:2]
    moved = (boxes + torch.tensor([[x0, y0, x0, y0]])).float()
    crop = torch.as_tensor(crop_box, dtype=torch.float)[None]
    image = torch.as_tensor(image_box, dtype=torch.float)[None]
    near_crop = torch.isclose(moved, crop, atol=atol, rtol=0)
    near_image = torch.isclose(moved, image, atol=atol, rtol=0)
    return (near_crop & ~near_image).any(dim=1)


def uncrop_masks(masks: torch.Tensor, crop_box: Sequence[int], image_hw: Tuple[int, int]) -> torch.Tensor:
    """(B, h, w) masks of a crop -> (B, H, W), zero outside the crop."""
    x0, y0, x1, y1 = crop_box
    h, w = image_hw
    if (x0, y0, x1, y1) == (0, 0, w, h):
        return masks
    return torch.nn.functional.pad(masks, (x0, w - x1, y0, h - y1), value=0)


def encode_rle(masks: np.ndarray) -> List[Dict]:
    """(B, H, W) bool -> COCO compressed RLEs (pycocotools, column-major), counts as str."""
    from pycocotools import mask as mask_utils

    if len(masks) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def decode_rle(rle: Dict) -> np.ndarray:
    """A COCO RLE (compressed or uncompressed counts) -> (H, W) bool."""
    from pycocotools import mask as mask_utils

    h, w = rle["size"]
    if isinstance(rle["counts"], list):
        rle = mask_utils.frPyObjects(rle, h, w)
    elif isinstance(rle["counts"], str):
        rle = {"size": [h, w], "counts": rle["counts"].encode("ascii")}
    with warnings.catch_warnings():  # pycocotools 2.0.11 calls numpy 2's __array__ the old way
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


def uncompressed_rle(mask: np.ndarray) -> Dict:
    """(H, W) bool -> {"size": [H, W], "counts": [...]}, column-major runs starting with zeros."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"size": list(mask.shape), "counts": counts}


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> Tuple[np.ndarray, bool]:
    """Fill holes (mode "holes") or drop islands ("islands") smaller than `area_thresh` pixels,
    8-connected; when every island is small the largest stays. Returns (mask, changed)."""
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    holes = mode == "holes"
    working = holes ^ mask
    regions, n_regions = ndimage.label(working, structure=np.ones((3, 3), dtype=bool))
    sizes = np.bincount(regions.ravel(), minlength=n_regions + 1)[1:]
    small = [i + 1 for i, size in enumerate(sizes) if size < area_thresh]
    if not small:
        return mask, False
    fill = [0] + small
    if not holes:
        fill = [i for i in range(n_regions + 1) if i not in fill] or [int(np.argmax(sizes)) + 1]
    return np.isin(regions, fill), True


def xyxy_to_xywh(box: Sequence) -> List:
    x0, y0, x1, y1 = box
    return [x0, y0, x1 - x0, y1 - y0]
