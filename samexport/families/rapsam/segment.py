"""`samexport segment` for RAP-SAM, whose prompts are queries: every click and every box is its own query (one
mask each; there are no negative clicks), and `--everything` is the panoptic head with the official fusion,
one mask per segment named by its COCO panoptic class. Runs the family's pipelines over any session."""

from __future__ import annotations

from typing import Dict

import numpy as np
import torch

from ... import amg
from ...errors import InputError
from ...modeling.rapsam import RapSam
from .panoptic import segment_name
from .pipelines import PanopticPipeline, PromptPipeline


def run(options, image: np.ndarray, session, progress):
    """(records, timings, title, backend, (mask of each point, mask of each box)) for `segment.segment`."""
    if any(label != 1 for _, _, label in options.points):
        raise InputError(
            f"{options.encoder} has no negative clicks: every click asks for the object under it"
        )
    hw = image.shape[:2]
    if options.everything:
        pipeline = PanopticPipeline(session)
        seg, segments = pipeline(image)
        timings = dict(pipeline.timings)
        kept = [s for s in segments if not s["void"]]
        records = [_record(seg == s["id"], None, name=segment_name(s)) for s in kept]
        title = f"{options.encoder} panoptic: {len(records)} segments (official fusion, thresholds 0.8)"
        return records, timings, title, session.backend, ([], [])
    prompts = RapSam.prompt_tokens(hw, [[x, y] for x, y, _ in options.points] or None, options.boxes or None)
    pipeline = PromptPipeline(session)
    masks, iou = pipeline(image, prompts)
    timings = dict(pipeline.timings)
    records = [_record(masks[i], float(iou[i])) for i in range(len(masks))]
    title = f"{options.encoder} on {session.backend}: {len(records)} prompted mask(s), one per prompt"
    points = len(options.points)  # clicks are the first queries, then the boxes: one mask each
    return (
        records,
        timings,
        title,
        session.backend,
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
