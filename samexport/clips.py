"""Clips in and out: a video file or a folder of frames, checked and counted before any work and read one
frame at a time; an annotated clip and its JSON written all or nothing.

A clip is refused before a frame is decoded when the run would need more memory than its budget (the
caller's estimate from the clip's size and length). The annotated video is encoded into a work folder beside
the output (one a killed run left is removed by the next run) and moved into place with the JSON at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from .console import Progress
from .errors import InputError, UsageError
from .fsutil import OutputFiles, remove_abandoned

MAX_FRAME_PIXELS = 8_300_000  # a 4K UHD frame; larger frames are refused before any work
MAX_FRAMES = 100_000
FOLDER_FPS = 25.0  # a folder of frames has no frame rate: its annotated clip plays at this one
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")  # SAM 2's folder loader reads <number>.jpg; PNG too
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
# bytes a run needs for a clip of (height, width, frames)
MemoryEstimate = Callable[[int, int, int], float]


def available_memory() -> float:
    """Bytes of memory this machine has free now (MemAvailable where Linux says it, else physical pages)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


class Clip:
    """A clip's path, frame size (h, w), frame count and rate; `frames()` yields HxWx3 uint8 RGB in order."""

    path: Path
    size: Tuple[int, int]
    count: int
    fps: float

    def frames(self) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def _check_size(self, height: int, width: int) -> None:
        if height * width > MAX_FRAME_PIXELS:
            raise InputError(f"{self.path} has {width}x{height} frames, more than 4K; downscale it first")

    def _check_memory(
        self,
        budget: Optional[float],
        estimate: Optional[MemoryEstimate],
        height: int,
        width: int,
        frames: int,
    ) -> None:
        if budget is None or estimate is None:
            return
        needed = estimate(height, width, frames or MAX_FRAMES)
        if needed > budget:
            raise InputError(
                f"{self.path} ({width}x{height}, {frames or 'unknown'} frames) needs about "
                f"{needed / 1e9:.1f} GB of memory, over the {budget / 1e9:.1f} GB budget (free memory "
                "or --memory-budget); "
                "downscale or cut the clip, or raise --memory-budget on a machine that has the memory"
            )


class VideoFile(Clip):
    """A video file OpenCV (FFmpeg) decodes, checked and counted on opening."""

    def __init__(
        self, path: Path, budget: Optional[float] = None, estimate: Optional[MemoryEstimate] = None
    ) -> None:
        import cv2

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
            self.fps = float(capture.get(cv2.CAP_PROP_FPS)) or FOLDER_FPS
            # what the container's header says, before a frame is decoded (the memory check needs no more)
            self.header = (
                int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
            )
            self._check_memory(budget, estimate, *self.header)
            ok, frame = capture.read()
            if not ok or frame is None:
                raise InputError(f"{self.path} has no frames OpenCV can decode")
            self.size = frame.shape[:2]
            self._check_size(*self.size)
            self.count = 1
            while capture.grab():
                self.count += 1
                if self.count > MAX_FRAMES:
                    raise InputError(f"{self.path} has more than {MAX_FRAMES} frames; cut it first")
        finally:
            capture.release()

    def frames(self) -> Iterator[np.ndarray]:
        """Every frame, in order; refuses a file that changed since it was opened."""
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


class FrameFolder(Clip):
    """A folder of frames named `<number>.jpg` (SAM 2's layout; `.png` too), in number order; every frame's
    header is read on opening, so a folder of mixed sizes is refused before any work."""

    def __init__(
        self, path: Path, budget: Optional[float] = None, estimate: Optional[MemoryEstimate] = None
    ) -> None:
        from PIL import Image, UnidentifiedImageError

        self.path = Path(path)
        self.fps = FOLDER_FPS
        names = [p for p in os.listdir(self.path) if os.path.splitext(p)[-1].lower() in FRAME_EXTENSIONS]
        try:
            names.sort(key=lambda p: int(os.path.splitext(p)[0]))
        except ValueError:
            raise InputError(
                f"{self.path}: frames must be named <number>.jpg (as SAM 2's loader reads them)"
            ) from None
        if not names:
            raise InputError(
                f"{self.path} holds no <number>.jpg frames; give a folder of JPEG (or PNG) frames or a video"
            )
        if len(names) > MAX_FRAMES:
            raise InputError(f"{self.path} has more than {MAX_FRAMES} frames; cut it first")
        self.files: List[Path] = [self.path / n for n in names]
        sizes = []
        for file in self.files:
            try:
                with Image.open(file) as image:
                    sizes.append((image.height, image.width))
            except (UnidentifiedImageError, OSError) as error:
                raise InputError(f"{file} is not an image Pillow can read ({error})") from None
        self.size, self.count = sizes[0], len(self.files)
        for file, size in zip(self.files, sizes):
            if size != self.size:
                raise InputError(
                    f"{file} is {size[1]}x{size[0]}, {self.files[0].name} {self.size[1]}x{self.size[0]}; "
                    "every frame must have one size"
                )
        self._check_size(*self.size)
        self._check_memory(budget, estimate, *self.size, self.count)

    def frames(self) -> Iterator[np.ndarray]:
        from PIL import Image

        for file in self.files:
            with Image.open(file) as image:
                frame = np.asarray(image.convert("RGB"))
            if frame.shape[:2] != self.size:
                raise InputError(
                    f"{file} changed size since the clip was opened; every frame must have one size"
                )
            yield frame


def open_clip(path: Path, budget: Optional[float] = None, estimate: Optional[MemoryEstimate] = None) -> Clip:
    """A folder of frames or a video file, checked (and refused past `budget` bytes by `estimate`)."""
    return (FrameFolder if Path(path).is_dir() else VideoFile)(Path(path), budget, estimate)


def run_record(format_name: str, clip: Clip, options, session) -> Dict:
    """The head of a clip run's JSON: its format, the clip, the model and what ran it (`options`: a
    `segment.VideoSegmentOptions`, `session`: a `runtime.Session`)."""
    return {
        "format": format_name,
        "video": str(options.video),
        "frames": clip.count,
        "fps": clip.fps,
        "size_hw": list(clip.size),
        "model": options.encoder,
        "backend": session.backend,
        "session": session.describe(),
        "checkpoint": str(options.checkpoint) if options.checkpoint else None,
    }


def label_frame(
    frame: np.ndarray, masks: List[np.ndarray], ids: List[int], texts: List[str], font
) -> np.ndarray:
    """One frame with each mask painted in its id's colour and its text at the mask's centroid (kept inside
    the frame)."""
    from PIL import Image, ImageDraw

    from .overlay import paint_masks, palette

    colours = palette(max(ids, default=0) + 1)
    picture = Image.fromarray(paint_masks(frame, masks, [colours[i] for i in ids]))
    draw = ImageDraw.Draw(picture)
    h, w = frame.shape[:2]
    for mask, id_, text in zip(masks, ids, texts):
        rows, cols = np.nonzero(mask)
        if not len(rows):
            continue
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        x = int(min(max(cols.mean() - (right - left) / 2, 0), max(w - (right - left) - 2, 0)))
        y = int(min(max(rows.mean() - (bottom - top) / 2, 0), max(h - (bottom - top) - 2, 0)))
        draw.rectangle([x - 2, y - 1, x + right - left + 2, y + bottom - top + 1], fill=(0, 0, 0))
        draw.text((x - left, y - top), text, fill=colours[id_], font=font)
    return np.asarray(picture)


def write_annotated_clip(
    clip: Clip,
    output: Path,
    json_path: Optional[Path],
    files: OutputFiles,
    draw: Callable[[int, np.ndarray], np.ndarray],
    document: Callable[[float], Dict],
    progress: Progress,
) -> Dict:
    """Draw every frame (`draw(index, frame)` -> the annotated frame) into an MPEG-4 clip at the clip's rate,
    then write it and the JSON (`document(draw seconds)`) together; returns the document."""
    import cv2

    start = time.perf_counter()
    h, w = clip.size
    folder = Path(output).parent
    remove_abandoned(folder, WORK_PREFIX)
    with tempfile.TemporaryDirectory(prefix=f"{WORK_PREFIX}{os.getpid()}-", dir=folder) as scratch:
        encoded = Path(scratch) / f"annotated{Path(output).suffix}"
        writer = cv2.VideoWriter(str(encoded), cv2.VideoWriter_fourcc(*"mp4v"), clip.fps, (w, h))
        if not writer.isOpened():
            raise UsageError("OpenCV cannot encode MPEG-4 video here (its FFmpeg lacks the mp4v encoder)")
        try:
            with progress.bar("drawing the annotated video", unit="frames") as advance:
                for index, frame in enumerate(clip.frames()):
                    writer.write(cv2.cvtColor(draw(index, frame), cv2.COLOR_RGB2BGR))
                    advance(index + 1, clip.count)
        finally:
            writer.release()
        result = document(time.perf_counter() - start)
        items = {output: lambda f: _copy(encoded, f)}
        if json_path:
            text = json.dumps(result, indent=1) + "\n"
            items[json_path] = lambda f: f.write(text)
        files.write(items, binary=[output])
    return result


def _copy(source: Path, target) -> None:
    with open(source, "rb") as f:
        shutil.copyfileobj(f, target)
