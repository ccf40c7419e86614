"""`samexport segment VIDEO --video`: video instance segmentation of a clip (RAP-SAM), to an annotated
video (every instance id in one colour in every frame) and a JSON of the per-frame instances (COCO RLE,
class, score, id).

The clip is read three times, never held whole: once to count and check its frames, once through the
model (one tube of frames at a time), once to draw. The video is encoded into a temporary file outside the
output folder and moved into place with the JSON at the end, all or nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import numpy as np

from .console import Progress
from .errors import InputError, UsageError
from .fsutil import OutputFiles

VIDEO_FORMAT = "samexport.video/1"
VIDEO_SUFFIX = ".mp4"
DEFAULT_SCORE_THRESHOLD = 0.5  # instances drawn and written: score (class x mask) at least this
MAX_FRAME_PIXELS = 8_300_000  # a 4K UHD frame; larger frames are refused before any work
MAX_FRAMES = 100_000


@dataclass
class VideoSegmentOptions:
    """What to segment and where the results go; checked before any work."""

    video: Path
    encoder: str
    output: Path
    json_path: Optional[Path] = None
    checkpoint: Optional[Path] = None
    classifier: Optional[Path] = None
    backend: str = "torch"
    score_threshold: float = DEFAULT_SCORE_THRESHOLD
    force: bool = False

    def __post_init__(self) -> None:
        from .registry import get_spec

        spec = get_spec(self.encoder)
        if not spec.family.segments_video:
            raise UsageError(
                f"--video is RAP-SAM's video instance segmentation (rapsam_r50); {spec.name} segments "
                "images only"
            )
        if self.backend != "torch":
            raise UsageError(
                "--video runs with --backend torch; the tube head's exports are checked against it by "
                "`samexport convert` and run in an app with samexport.video's matching"
            )
        if self.output.suffix.lower() != VIDEO_SUFFIX:
            raise UsageError(f"--output must be an {VIDEO_SUFFIX} file with --video, got {self.output}")
        if not (0.0 <= self.score_threshold <= 1.0):
            raise UsageError(f"--score-threshold takes 0 to 1, got {self.score_threshold}")
        self.files = OutputFiles([self.output, self.json_path], self.force)
        for path in self.files.paths:
            if path.resolve() == Path(self.video).resolve():
                raise UsageError(f"{path} is the input video; choose another output name")
        if self.json_path and self.json_path.resolve() == self.output.resolve():
            raise UsageError("--json and --output name the same file")
        self.files.check()

    @property
    def extras(self) -> Dict[str, Path]:
        return {"classifier": self.classifier} if self.classifier is not None else {}


class VideoFile:
    """A video file OpenCV (FFmpeg) decodes: checked and counted on opening, its frames read as RGB."""

    def __init__(self, path: Path) -> None:
        import cv2

        # FFmpeg's own log lines (e.g. "moov atom not found") would come before the one-line error
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        self.path = Path(path)
        if not self.path.is_file():
            raise UsageError(f"video {self.path} does not exist")
        capture = cv2.VideoCapture(str(self.path))
        try:
            if not capture.isOpened():
                raise InputError(
                    f"{self.path} is not a video OpenCV can read; give an MP4 (H.264 or MPEG-4) file"
                )
            self.fps = float(capture.get(cv2.CAP_PROP_FPS)) or 25.0
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

    from .amg import decode_rle
    from .overlay import paint_masks, palette

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


def segment_video(options: VideoSegmentOptions, quiet: bool = False) -> Dict:
    """Run, draw, write; returns the JSON document (also written to --json when given)."""
    import cv2
    from PIL import ImageFont

    from .amg import xyxy_to_xywh
    from .video import YOUTUBE_VIS_2019_CLASSES
    from .zoo import build_model_noting

    progress = Progress(quiet=quiet)
    clip = VideoFile(options.video)
    timings: Dict[str, float] = {}
    start = time.perf_counter()
    model, notes = build_model_noting(options.encoder, options.checkpoint, **options.extras)
    for note in notes:
        progress.say(f"warning: {note}")
    model.require_video_classifier()
    timings["build"] = time.perf_counter() - start
    start = time.perf_counter()
    with progress.bar(f"video instances of {clip.path.name} ({clip.count} frames)", unit="frames") as advance:
        result = model.video_instances(
            clip.frames(), clip.count, progress=lambda done: advance(done, clip.count)
        )
    timings["segment"] = time.perf_counter() - start
    kept = [[i for i in frame if i["score"] >= options.score_threshold] for frame in result.frames]
    start = time.perf_counter()
    h, w = clip.size
    font = ImageFont.load_default(size=max(10, round(min(h, w) / 40)))
    with tempfile.TemporaryDirectory(prefix="samexport-video-") as scratch:
        encoded = Path(scratch) / f"annotated{VIDEO_SUFFIX}"
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
            "backend": "torch",
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
