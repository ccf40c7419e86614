"""`samexport segment` for families whose prompts are queries (RAP-SAM): every click and every box is
its own query (one mask each; there are no negative clicks), and `--everything` is the panoptic head
with the official fusion, one mask per segment named by its COCO panoptic class."""

from __future__ import annotations

import time
from typing import Dict

import numpy as np
import torch

from . import amg
from .errors import InputError, UsageError
from .panoptic import segment_name


def run(options, image: np.ndarray, progress):
    """(records, timings, title, backend, (mask of each point, mask of each box)) for `segment.segment`."""
    from .zoo import build_model_noting

    if options.backend != "torch":
        raise UsageError(
            f"segment runs {options.encoder} with --backend torch; its ONNX and Core ML exports are checked "
            "against it by `samexport convert`"
        )
    if any(label != 1 for _, _, label in options.points):
        raise InputError(
            f"{options.encoder} has no negative clicks: every click asks for the object under it"
        )
    start = time.perf_counter()
    model, notes = build_model_noting(options.encoder, options.checkpoint, **options.extras)
    for note in notes:
        progress.say(f"warning: {note}")
    timings = {"build": time.perf_counter() - start}
    start = time.perf_counter()
    features = model.encode_image(image)
    timings["encode"] = time.perf_counter() - start
    hw = image.shape[:2]
    start = time.perf_counter()
    if options.everything:
        classes, masks = model.panoptic(features)
        seg, segments = model.panoptic_segments(classes, masks, hw)
        timings["panoptic"] = time.perf_counter() - start
        kept = [s for s in segments if not s["void"]]
        records = [_record(seg == s["id"], None, name=segment_name(s)) for s in kept]
        title = f"{options.encoder} panoptic: {len(records)} segments (official fusion, thresholds 0.8)"
        return records, timings, title, "torch", ([], [])
    prompts = model.prompt_tokens(hw, [[x, y] for x, y, _ in options.points] or None, options.boxes or None)
    logits, iou = model.decode(features, prompts)
    masks = model.postprocess_masks(logits, hw)[0] > 0
    timings["decode"] = time.perf_counter() - start
    records = [_record(masks[i].numpy(), float(iou[0, i, 0])) for i in range(masks.shape[0])]
    title = f"{options.encoder}: {len(records)} prompted mask(s), one per prompt"
    points = len(options.points)  # clicks are the first queries, then the boxes: one mask each
    return (
        records,
        timings,
        title,
        "torch",
        (list(range(points)), list(range(points, points + len(options.boxes)))),
    )


def _record(mask: np.ndarray, iou, name: str | None = None) -> Dict:
    box = amg.masks_to_boxes(torch.as_tensor(mask)[None])[0].tolist()
    record = {
        "segmentation": mask,
        "area": int(mask.sum()),
        "bbox": amg.xyxy_to_xywh(box),
        "predicted_iou": iou,
        "stability_score": None,
        "mask_token": None if name is not None else 0,  # a prompt query gives one mask
    }
    if name is not None:
        record["category"] = name
    return record
