"""`samexport segment CLIP --video --encoder edgetam`: the objects the prompts name, tracked through a clip
(a video file or a folder of `<number>.jpg` frames), to an annotated clip (one colour per object) and a JSON
of each frame's objects (COCO RLE mask, object score, id).

Every prompt is added before tracking starts (each prompted frame is a conditioning frame, as when the
official predictor is given several objects' first frames); the clip is then tracked forwards from the
earliest prompted frame to the end, and backwards from it to frame 0 when it is not the first. The tracker
holds the clip's frames in memory (as the official predictor does); a clip whose run would need more than
the memory budget is refused before any frame is decoded.
"""

from __future__ import annotations

import time
from typing import Dict, List

import numpy as np

from ...clips import available_memory, label_frame, open_clip, run_record, write_annotated_clip
from ...console import Progress
from ...track_prompts import check_prompts_in_clip

TRACK_FORMAT = "samexport.track/1"
# Peak RSS of `segment --video --encoder edgetam` on PyTorch: a base (the model, two frames' features, the
# memory attention's activations) plus the frames the tracker holds (3 bytes a pixel) and, per object and
# frame, the stored low-res mask and memory. The base is a margin, not a fit: the one run measured here
# (`/usr/bin/time -v`, 8 frames of 320x240, 1 object, PyTorch) peaked at 0.88 GB.
MEMORY_BASE_BYTES = 2.0e9
MEMORY_BYTES_PER_OBJECT_FRAME = 256 * 256 * 4 + 512 * 64 * 4 + 4096


def memory_estimate(objects: int):
    """(height, width, frames) -> bytes a run tracking `objects` objects needs at its peak."""

    def estimate(height: int, width: int, frames: int) -> float:
        return MEMORY_BASE_BYTES + frames * (3 * height * width + objects * MEMORY_BYTES_PER_OBJECT_FRAME)

    return estimate


def segment_video(options, open_session, quiet: bool = False) -> Dict:
    """Check the clip and the prompts, open the session, track, draw, write; returns the JSON document (also
    written to --json when given). `options`: `segment.VideoSegmentOptions` with its `prompts`."""
    import torch
    from PIL import ImageFont

    from ...amg import encode_rle, masks_to_boxes, xyxy_to_xywh
    from ..registry import get_spec

    progress = Progress(quiet=quiet)
    prompts = list(options.prompts)
    objects = sorted({p.object for p in prompts})
    budget = options.memory_budget_gb * 1e9 if options.memory_budget_gb is not None else available_memory()
    clip = open_clip(options.video, budget, memory_estimate(len(objects)))
    check_prompts_in_clip(prompts, clip.count, clip.size, clip.path.name)
    start = time.perf_counter()
    session = open_session()
    timings = {"build": time.perf_counter() - start}
    records: List[List[Dict]] = [[] for _ in range(clip.count)]
    with session:
        tracker = get_spec(options.encoder).family.video_predictor(session)
        start = time.perf_counter()
        state = tracker.init_state(frames=list(clip.frames()))
        for prompt in sorted(prompts, key=lambda p: (p.frame, p.object)):
            points = [[x, y] for x, y, _ in prompt.points] or None
            labels = [label for _, _, label in prompt.points] or None
            tracker.add_new_points_or_box(
                state, prompt.frame, prompt.object, points=points, labels=labels, box=prompt.box
            )
        first = min(p.frame for p in prompts)
        passes = [(first, False)] + ([(first, True)] if first > 0 else [])
        done = 0
        with progress.bar(
            f"tracking {len(objects)} object{'s' * (len(objects) > 1)} through {clip.path.name}",
            unit="frames",
        ) as advance:
            for start_frame, reverse in passes:
                for frame_idx, obj_ids, masks in tracker.propagate_in_video(
                    state, start_frame, reverse=reverse
                ):
                    if records[frame_idx]:
                        continue  # the earliest prompted frame, reached by both passes
                    binary = masks[:, 0] > 0
                    boxes = masks_to_boxes(torch.from_numpy(binary)).tolist()
                    for obj_id, mask, rle, box in zip(obj_ids, binary, encode_rle(binary), boxes):
                        score = state.objects[obj_id].output_at(frame_idx).object_score
                        records[frame_idx].append(
                            {
                                "id": int(obj_id),
                                "object_score": round(float(score), 4),
                                "present": bool(score > 0),
                                "area": int(mask.sum()),
                                "bbox": xyxy_to_xywh(box),
                                "segmentation": rle,
                            }
                        )
                    done += 1
                    advance(done, clip.count)
    timings["track"] = time.perf_counter() - start
    h, w = clip.size
    font = ImageFont.load_default(size=max(10, round(min(h, w) / 40)))

    def draw(index: int, frame: np.ndarray) -> np.ndarray:
        from ...amg import decode_rle

        shown = [r for r in records[index] if r["area"]]
        return label_frame(
            frame,
            [decode_rle(r["segmentation"]) for r in shown],
            [r["id"] for r in shown],
            [f"#{r['id']}" for r in shown],
            font,
        )

    def document(draw_seconds: float) -> Dict:
        timings["draw"] = draw_seconds
        return {
            **run_record(TRACK_FORMAT, clip, options, session),
            "prompts": [
                {"frame": p.frame, "object": p.object, "points": [list(q) for q in p.points], "box": p.box}
                for p in prompts
            ],
            "tracked": {"forward_from": first, "backward_from": first if first > 0 else None},
            "objects": objects,
            "frames_objects": records,
            "frames_per_second": round(clip.count / timings["track"], 3) if timings["track"] else None,
            "timings_s": {k: round(v, 4) for k, v in timings.items()},
        }

    return write_annotated_clip(
        clip, options.output, options.json_path, options.files, draw, document, progress
    )
