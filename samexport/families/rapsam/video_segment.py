"""`samexport segment VIDEO --video`: video instance segmentation of a clip (RAP-SAM), to an annotated
video (every instance id in one colour in every frame) and a JSON of the per-frame instances (COCO RLE,
class, score, id).

The clip (`clips.open_clip`: a video file or a folder of frames) is read three times, never held whole: once
to count and check its frames, once through the model (one tube of frames at a time), once to draw. The
memory a run needs is estimated from the clip's header before any frame is decoded (`memory_estimate`) and
refused past a budget.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Dict

import numpy as np

from ...clips import available_memory, label_frame, open_clip, run_record, write_annotated_clip
from ...console import Progress

VIDEO_FORMAT = "samexport.video/1"
# Peak RSS of `segment --video` on PyTorch: a base (model, features, one tube of frames at the model's size)
# plus, per pixel of a frame and per frame of the longest tube, the 100 queries' float32 masks at video size
# and their bookkeeping. Fitted to two measured runs here: 4K x 5 frames (tubes of 3) peaked at 11.65 GB,
# 1080p x 10 frames at 3.7 GB.
MEMORY_BASE_BYTES = 1.1e9
MEMORY_BYTES_PER_TUBE_PIXEL = 430


def memory_estimate(height: int, width: int, frames: int) -> float:
    """Bytes `segment --video` needs at its peak for a clip of `frames` frames of height x width."""
    from .video import tube_ends

    longest = int(np.max(np.diff([0] + tube_ends(max(frames, 1)))))
    return MEMORY_BASE_BYTES + MEMORY_BYTES_PER_TUBE_PIXEL * height * width * longest


def segment_video(options, open_session, quiet: bool = False) -> Dict:
    """Check the clip, open the session (`open_session(**convert_fields)`: an export converted at the clip's
    official video size where there is none), run the video pipeline over its runners, draw, write; returns
    the JSON document (also written to --json when given). `options`: `segment.VideoSegmentOptions`."""
    from PIL import ImageFont

    from ...amg import decode_rle, xyxy_to_xywh
    from ...modeling.rapsam import VIDEO_RESIZE_SCALE, padded_shape, resized_shape
    from .pipelines import VideoPipeline
    from .video import YOUTUBE_VIS_2019_CLASSES

    progress = Progress(quiet=quiet)
    budget = options.memory_budget_gb * 1e9 if options.memory_budget_gb is not None else available_memory()
    clip = open_clip(options.video, budget, memory_estimate)
    official = padded_shape(*resized_shape(*clip.size, VIDEO_RESIZE_SCALE))
    start = time.perf_counter()
    session = open_session(input_size=official)
    timings = {"build": time.perf_counter() - start}
    with session:
        pipeline = VideoPipeline(session)
        if session.input_size is not None and tuple(session.input_size) != official:
            size, wanted = "x".join(map(str, session.input_size)), "x".join(map(str, official))
            progress.say(
                f"note: {Path(session.source).name} takes {size} frames; the official video pipeline gives "
                f"this clip {wanted}, so the instances may differ from --backend torch's (convert with "
                f"--input-size {wanted} to match)"
            )
        start = time.perf_counter()
        with progress.bar(f"video instances of {clip.path.name} ({clip.count} frames)", unit="frames") as bar:
            result = pipeline(clip.frames(), clip.count, progress=lambda done: bar(done, clip.count))
    timings["segment"] = time.perf_counter() - start
    kept = [[i for i in frame if i["score"] >= options.score_threshold] for frame in result.frames]
    h, w = clip.size
    font = ImageFont.load_default(size=max(10, round(min(h, w) / 40)))

    def document(draw_seconds: float) -> Dict:
        timings["draw"] = draw_seconds
        return {
            **run_record(VIDEO_FORMAT, clip, options, session),
            "classes": list(YOUTUBE_VIS_2019_CLASSES),
            "score_threshold": options.score_threshold,
            "tubes": [
                {"start": start_frame, "end": tube["end"], "query_order": tube["order"].tolist()}
                for start_frame, tube in zip([0] + [t["end"] for t in result.tubes[:-1]], result.tubes)
            ],
            "instances": [
                [
                    {
                        "id": i["id"],
                        "category_id": i["label"],
                        "category": YOUTUBE_VIS_2019_CLASSES[i["label"]],
                        "score": i["score"],
                        "class_score": i["class_score"],
                        "bbox": xyxy_to_xywh(i["box"]),
                        "area": i["area"],
                        "segmentation": i["rle"],
                    }
                    for i in frame
                ]
                for frame in kept
            ],
            "timings_s": {k: round(v, 4) for k, v in timings.items()},
        }

    return write_annotated_clip(
        clip,
        options.output,
        options.json_path,
        options.files,
        lambda index, frame: label_frame(
            frame,
            [decode_rle(i["rle"]) for i in kept[index]],
            [i["id"] for i in kept[index]],
            [f"#{i['id']} {YOUTUBE_VIS_2019_CLASSES[i['label']]} {i['score']:.2f}" for i in kept[index]],
            font,
        ),
        document,
        progress,
    )
