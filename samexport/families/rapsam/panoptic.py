"""Panoptic fusion (mmdet 3.3 `MaskFormerFusionHead.panoptic_postprocess`), run in the app after the
panoptic head: class logits + upscaled mask logits -> one panoptic map.

Queries whose softmax winner is a real class with probability > `object_mask_thr` compete per
pixel by score x sigmoid(mask); a segment keeps the pixels it wins where its own probability is
>= 0.5 and is dropped when it keeps less than `iou_thr` of its own mask. Things are labelled
`class + 1000 * instance_id`, stuff `class`, unclaimed pixels `VOID` (133).
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np
import torch

from ...modeling.rapsam_head import NUM_CLASSES, NUM_THINGS

VOID = NUM_CLASSES
INSTANCE_OFFSET = 1000

# COCO panoptic categories in the classifier's order (mmdet's CocoPanopticDataset): 80 things, 53 stuff.
COCO_PANOPTIC_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
    "banner", "blanket", "bridge", "cardboard", "counter", "curtain", "door-stuff", "floor-wood", "flower",
    "fruit", "gravel", "house", "light", "mirror-stuff", "net", "pillow", "platform", "playingfield",
    "railroad", "river", "road", "roof", "sand", "sea", "shelf", "snow", "stairs", "tent", "towel",
    "wall-brick", "wall-stone", "wall-tile", "wall-wood", "water-other", "window-blind", "window-other",
    "tree-merged", "fence-merged", "ceiling-merged", "sky-other-merged", "cabinet-merged", "table-merged",
    "floor-other-merged", "pavement-merged", "mountain-merged", "grass-merged", "dirt-merged", "paper-merged",
    "food-other-merged", "building-other-merged", "rock-merged", "wall-other-merged", "rug-merged",
)  # fmt: skip


def segment_name(segment: Dict) -> str:
    """`person #2`, `sky-other-merged` or `void`."""
    if segment["void"]:
        return "void"
    name = COCO_PANOPTIC_CLASSES[segment["category_id"]]
    return f"{name} #{segment['instance_id']}" if segment["isthing"] else name


@torch.no_grad()
def fuse(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    object_mask_thr: float = 0.8,
    iou_thr: float = 0.8,
    filter_low_score: bool = True,
) -> Tuple[np.ndarray, List[Dict]]:
    """class_logits (Q, 134), mask_logits (Q, H, W) at the output size -> (map (H, W) int32, segments)."""
    scores, labels = class_logits.softmax(-1).max(-1)
    probs = mask_logits.sigmoid()
    keep = labels.ne(NUM_CLASSES) & (scores > object_mask_thr)
    cur_scores, cur_classes, cur_masks = scores[keep], labels[keep], probs[keep]
    h, w = mask_logits.shape[-2:]
    seg = torch.full((h, w), VOID, dtype=torch.int32)
    if len(cur_classes):
        owner = (cur_scores.view(-1, 1, 1) * cur_masks).argmax(0)
        instance_id = 1
        for k, label in enumerate(cur_classes.tolist()):
            region = owner == k
            area = int(region.sum())
            own_area = int((cur_masks[k] >= 0.5).sum())
            if filter_low_score:
                region &= cur_masks[k] >= 0.5
            if area > 0 and own_area > 0:
                if area / own_area < iou_thr:
                    continue
                if label < NUM_THINGS:
                    seg[region] = label + instance_id * INSTANCE_OFFSET
                    instance_id += 1
                else:
                    seg[region] = label
    seg_np = seg.numpy()
    return seg_np, segments_info(seg_np)


def segments_info(seg: np.ndarray) -> List[Dict]:
    """One entry per id in the map: category, instance, thing or stuff, area, void."""
    ids, areas = np.unique(seg, return_counts=True)
    out = []
    for sid, area in zip(ids.tolist(), areas.tolist()):
        category = sid % INSTANCE_OFFSET
        out.append(
            {
                "id": sid,
                "category_id": category,
                "instance_id": sid // INSTANCE_OFFSET,
                "isthing": category < NUM_THINGS,
                "area": area,
                "void": category == VOID,
            }
        )
    return out
