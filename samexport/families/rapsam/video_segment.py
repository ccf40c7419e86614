"""`samexport segment VIDEO --video`: video instance segmentation of a clip (RAP-SAM), to an annotated
video (every instance id in one colour in every frame) and a JSON of the per-frame instances (COCO RLE,
class, score, id).

The clip is read three times, never held whole: once to count and check its frames, once through the
model (one tube of frames at a time), once to draw. The memory a run needs is estimated from the clip's
header before any frame is decoded (`memory_estimate`) and refused past a budget. The video is encoded
into a work folder beside the output (one a killed run left is removed by the next run) and moved into
place with the JSON at the end, all or nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import numpy as np

from ...console import Progress
from ...errors import InputError, UsageError
from ...fsutil import remove_abandoned

VIDEO_FORMAT = "samexport.video/1"
MAX_FRAME_PIXELS = 8_300_000  # a 4K UHD frame; larger frames are refused before any work
MAX_FRAMES = 100_000
# Peak RSS of `segment --video` on PyTorch: a base (model, features, one tube of frames at the model's size)
# plus, per pixel of a frame and per frame of the longest tube, the 100 queries' float32 masks at video size
# and their bookkeeping. Fitted to two measured runs here: 4K x 5 frames (tubes of 3) peaked at 11.65 GB,
# 1080p x 10 frames at 3.7 GB.
MEMORY_BASE_BYTES = 1.1e9
MEMORY_BYTES_PER_TUBE_PIXEL = 430
WORK_PREFIX = ".samexport-video-"
# files that are pictures, not videos (OpenCV's FFmpeg would read one as a one-frame clip)
IMAGE_SIGNATURES = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"BM": "a BMP image",
    b"II*\x00": "a TIFF image",
    b"MM\x00*": "a TIFF image",
}


def memory_estimate(height: int, width: int, frames: int) -> float:
    """Bytes `segment --video` needs at its peak for a clip of `frames` frames of height x width."""
    from .video import tube_ends

    longest = int(np.max(np.diff([0] + tube_ends(max(frames, 1)))))
    return MEMORY_BASE_BYTES + MEMORY_BYTES_PER_TUBE_PIXEL * height * width * longest


def available_memory() -> float:
    """Bytes of memory this machine has free now (MemAvailable where Linux says it, else physical pages)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


class VideoFile:
    """A video file OpenCV (FFmpeg) decodes: checked and counted on opening, its frames read as RGB. With a
    memory `budget` (bytes), a clip whose run would need more is refused from its header."""

    def __init__(self, path: Path, budget: Optional[float] = None) -> None:
        import cv2

        self.budget = budget
        # FFmpeg's own log lines (e.g. "moov atom not found") would come before the one-line error
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        self.path = Path(path)
        if not self.path.is_file():
            raise UsageError(f"video {self.path} does not exist")
        with open(self.path, "rb") as f:
            head = f.read(16)
        picture = next((kind for magic, kind in IMAGE_SIGNATURES.items() if head.startswith(magic)), None)
        if picture or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
            raise InputError(
                f"{self.path} is {picture or 'a WebP image'}, not a video; segment it without --video"
            )
        capture = cv2.VideoCapture(str(self.path))
        try:
            if not capture.isOpened():
                raise InputError(
                    f"{self.path} is not a video OpenCV can read; give an MP4 (H.264 or MPEG-4) file"
                )
            self.fps = float(capture.get(cv2.CAP_PROP_FPS)) or 25.0
            # what the container's header says, before a frame is decoded (the memory check needs no more)
            self.header = (
                int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
            )
            if self.budget is not None:
                self.check_memory(*self.header)
            ok, frame = capture.read()
            if not ok or frame is None:
                raise InputError(f"{self.path} has no frames OpenCV can decode")
            self.size = frame.shape[:2]
            if self.size[0] * self.size[1] > MAX_FRAME_PIXELS:
                raise InputError(
                    f"{self.path} has {self.size[1]}x{self.size[0]} frames, more than 4K; downscale it first "
                    "(the model sees 736 px on the short side)"
                )
            self.count = 1
            while capture.grab():
                self.count += 1
                if self.count > MAX_FRAMES:
                    raise InputError(f"{self.path} has more than {MAX_FRAMES} frames; cut it first")
        finally:
            capture.release()

    def check_memory(self, height: int, width: int, frames: int) -> None:
        needed = memory_estimate(height, width, frames or MAX_FRAMES)
        if needed > self.budget:
            raise InputError(
                f"{self.path} ({width}x{height}, {frames or 'unknown'} frames) needs about "
                f"{needed / 1e9:.1f} GB of memory, over the {self.budget / 1e9:.1f} GB budget (free memory "
                "or --memory-budget); "
                "downscale the clip, or raise --memory-budget on a machine that has the memory"
            )

    def frames(self) -> Iterator[np.ndarray]:
        """Every frame, HxWx3 uint8 RGB, in order; refuses a file that changed since it was opened."""
        import cv2

        capture = cv2.VideoCapture(str(self.path))
        try:
            for index in range(self.count):
                ok, frame = capture.read()
                if not ok or frame is None:
                    raise InputError(f"{self.path}: frame {index} could not be decoded (the file changed?)")
                if frame.shape[:2] != self.size:
                    raise InputError(
                        f"{self.path}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, the first "
                        f"{self.size[1]}x{self.size[0]}; every frame must have one size"
                    )
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()


def annotate(frame: np.ndarray, instances: List[Dict], names, font) -> np.ndarray:
    """One frame with its instances painted in their ids' colours and labelled `#id class score` at each
    mask's centroid."""
    from PIL import Image, ImageDraw

    from ...amg import decode_rle
    from ...overlay import paint_masks, palette

    colours = palette(101)
    masks = [decode_rle(i["rle"]) for i in instances]
    picture = Image.fromarray(paint_masks(frame, masks, [colours[i["id"]] for i in instances]))
    draw = ImageDraw.Draw(picture)
    h, w = frame.shape[:2]
    for instance, mask in zip(instances, masks):
        rows, cols = np.nonzero(mask)
        if not len(rows):
            continue
        text = f"#{instance['id']} {names[instance['label']]} {instance['score']:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        # at the mask's centroid, kept inside the frame
        x = int(min(max(cols.mean() - (right - left) / 2, 0), max(w - (right - left) - 2, 0)))
        y = int(min(max(rows.mean() - (bottom - top) / 2, 0), max(h - (bottom - top) - 2, 0)))
        draw.rectangle([x - 2, y - 1, x + right - left + 2, y + bottom - top + 1], fill=(0, 0, 0))
        draw.text((x - left, y - top), text, fill=colours[instance["id"]], font=font)
    return np.asarray(picture)


def segment_video(options, open_session, quiet: bool = False) -> Dict:
    """Check the clip, open the session (`open_session(**convert_fields)`: an export converted at the clip's
    official video size where there is none), run the video pipeline over its runners, draw, write; returns
    the JSON document (also written to --json when given). `options`: `segment.VideoSegmentOptions`."""
    import cv2
    from PIL import ImageFont

    from ...amg import xyxy_to_xywh
    from ...modeling.rapsam import VIDEO_RESIZE_SCALE, padded_shape, resized_shape
    from .pipelines import VideoPipeline
    from .video import YOUTUBE_VIS_2019_CLASSES

    progress = Progress(quiet=quiet)
    budget = options.memory_budget_gb * 1e9 if options.memory_budget_gb is not None else available_memory()
    clip = VideoFile(options.video, budget)
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
    start = time.perf_counter()
    h, w = clip.size
    font = ImageFont.load_default(size=max(10, round(min(h, w) / 40)))
    folder = Path(options.output).parent
    remove_abandoned(folder, WORK_PREFIX)
    with tempfile.TemporaryDirectory(prefix=f"{WORK_PREFIX}{os.getpid()}-", dir=folder) as scratch:
        encoded = Path(scratch) / f"annotated{Path(options.output).suffix}"
        writer = cv2.VideoWriter(str(encoded), cv2.VideoWriter_fourcc(*"mp4v"), clip.fps, (w, h))
        if not writer.isOpened():
            raise UsageError("OpenCV cannot encode MPEG-4 video here (its FFmpeg lacks the mp4v encoder)")
        try:
            with progress.bar("drawing the annotated video", unit="frames") as advance:
                for index, frame in enumerate(clip.frames()):
                    picture = annotate(frame, kept[index], YOUTUBE_VIS_2019_CLASSES, font)
                    writer.write(cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
                    advance(index + 1, clip.count)
        finally:
            writer.release()
        timings["draw"] = time.perf_counter() - start
        document = {
            "format": VIDEO_FORMAT,
            "video": str(options.video),
            "frames": clip.count,
            "fps": clip.fps,
            "size_hw": [h, w],
            "model": options.encoder,
            "backend": session.backend,
            "session": session.describe(),
            "checkpoint": str(options.checkpoint) if options.checkpoint else None,
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
        items = {options.output: lambda f: _copy(encoded, f)}
        if options.json_path:
            text = json.dumps(document, indent=1) + "\n"
            items[options.json_path] = lambda f: f.write(text)
        options.files.write(items, binary=[options.output])
    return document


def _copy(source: Path, target) -> None:
    with open(source, "rb") as f:
        shutil.copyfileobj(f, target)
