"""RAP-SAM's application loops as pipelines over a session's runners (`samexport.runtime.Session`): the same
code runs the PyTorch modules and every export a manifest lists.

- `frame_feed`: one image -> the encoder's `image` input and the resized (h, w): the official pipeline at any
  size (PyTorch) or letterboxed into the export's fixed input, normalised or as 0..255 pixels (an encoder
  that takes an image).
- `PromptPipeline`: encode once, each click and box its own query -> masks at the image size, raw IoU.
- `PanopticPipeline`: encode, panoptic head, the official fusion (`panoptic.fuse`).
- `VideoPipeline`: the official near-online video instance segmentation (`Mask2formerVideoMinVIS`): frames
  in tubes (`video.tube_ends`), encoder per frame, tube head per tube, queries matched across tubes
  (`video.TubeLinker`), class logits averaged, per-frame instances with ids (`video.video_instances`).
"""

from __future__ import annotations

import time
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch

from ...errors import InputError
from ...modeling.rapsam import (
    RESIZE_SCALE,
    VIDEO_RESIZE_SCALE,
    fitted_shape,
    fixed_input,
    letterbox_canvas,
    official_input,
    upscale_masks,
)
from ...modeling.transforms import check_image
from . import video
from .panoptic import fuse


def frame_feed(
    session, image: np.ndarray, fit: Tuple[int, int] = RESIZE_SCALE
) -> Tuple[np.ndarray, Tuple[int, int]]:
    """HxWx3 uint8 RGB -> (the encoder's `image` feed (1, 3, h, w) float32, resized (h, w) before padding)."""
    image = check_image(image)
    if session.input_size is None:
        x, resized_hw = official_input(image, fit)
        return x.numpy(), resized_hw
    if session.interfaces["encoder"].inputs[0].image:  # 0..255 pixels on the mean colour
        canvas = letterbox_canvas(image, session.input_size, fit)
        return canvas.transpose(2, 0, 1)[None].astype(np.float32), fitted_shape(
            *image.shape[:2], session.input_size, fit
        )
    x, resized_hw = fixed_input(image, session.input_size, fit)
    return x.numpy(), resized_hw


def encode(session, feed: np.ndarray) -> np.ndarray:
    """The encoder's mask features (1, 256, h/4, w/4) of one feed."""
    interface = session.interfaces["encoder"]
    return session.run("encoder", {interface.input_names[0]: feed})[interface.output_names[0]]


def encode_image(session, image: np.ndarray, timings: Dict[str, float]) -> Tuple[np.ndarray, Tuple[int, int]]:
    """One image's mask features and resized (h, w); its seconds in `timings["encode"]`."""
    start = time.perf_counter()
    feed, resized_hw = frame_feed(session, image)
    features = encode(session, feed)
    timings["encode"] = time.perf_counter() - start
    return features, resized_hw


class PromptPipeline:
    """Clicks and boxes on one image, each its own query: (masks (N, H, W) bool, raw IoU (N,)); `timings`
    says how long the last call encoded and decoded."""

    def __init__(self, session) -> None:
        session.require("encoder", "decoder")
        self.session = session
        self.timings: Dict[str, float] = {}

    def __call__(self, image: np.ndarray, prompts: torch.Tensor) -> Tuple[np.ndarray, np.ndarray]:
        """prompts: (1, N, 4) xyxy in the resized frame (`RapSam.prompt_tokens`)."""
        features, resized_hw = encode_image(self.session, image, self.timings)
        start = time.perf_counter()
        names = self.session.interfaces["decoder"]
        outputs = self.session.run(
            "decoder",
            dict(
                zip(
                    names.input_names,
                    (features, np.asarray(prompts, np.float32), np.asarray(resized_hw, np.float32)),
                )
            ),
        )
        logits, iou = (outputs[n] for n in names.output_names)
        masks = upscale_masks(torch.from_numpy(logits), image.shape[:2], resized_hw)[0] > 0
        self.timings["decode"] = time.perf_counter() - start
        return masks.numpy(), iou[0, :, 0]


class PanopticPipeline:
    """Everything on one image: the panoptic head and the official fusion -> (map (H, W) int32, segments);
    `timings` says how long the last call encoded and ran the head and the fusion."""

    def __init__(self, session) -> None:
        session.require("encoder", "panoptic")
        self.session = session
        self.timings: Dict[str, float] = {}

    def __call__(self, image: np.ndarray, **thresholds):
        features, resized_hw = encode_image(self.session, image, self.timings)
        start = time.perf_counter()
        names = self.session.interfaces["panoptic"]
        outputs = self.session.run("panoptic", {names.input_names[0]: features})
        classes, logits = (torch.from_numpy(outputs[n]) for n in names.output_names)
        fused = panoptic_segments(classes, logits, image.shape[:2], resized_hw, **thresholds)
        self.timings["panoptic"] = time.perf_counter() - start
        return fused


def panoptic_segments(class_logits, mask_logits, original_hw, resized_hw, **thresholds):
    """The official panoptic fusion at the original size of the panoptic head's raw outputs."""
    masks = upscale_masks(torch.as_tensor(mask_logits), original_hw, resized_hw)
    return fuse(torch.as_tensor(class_logits)[0], masks[0], **thresholds)


class VideoPipeline:
    """A clip's video instances (`video.VideoInstances`); frames are read as the tubes need them and only
    one tube's features and masks are held at a time."""

    def __init__(self, session) -> None:
        session.require("encoder", "tube")
        self.session = session

    def __call__(
        self,
        frames: Iterable[np.ndarray],
        count: Optional[int] = None,
        progress: Optional[Callable[[int], None]] = None,
    ) -> video.VideoInstances:
        """HxWx3 uint8 RGB frames (all one size; `count` of them, `len(frames)` by default);
        `progress(frames_done)` after each tube."""
        if count is None:
            if not hasattr(frames, "__len__"):
                raise InputError("frames is an iterator: give its number of frames as count=")
            count = len(frames)
        if int(count) < 1:
            raise InputError("a clip needs at least one frame")
        tube = self.session.interfaces["tube"]
        linker, masks, tubes = video.TubeLinker(), [], []
        iterator, start, size = iter(frames), 0, None
        for end in video.tube_ends(int(count)):
            features: List[np.ndarray] = []
            for _ in range(end - start):
                frame = next(iterator, None)
                if frame is None:
                    raise InputError(f"the clip has fewer frames than the {count} it was said to have")
                frame = check_image(frame)
                if size is None:
                    size = frame.shape[:2]
                elif frame.shape[:2] != size:
                    raise InputError(
                        f"every frame must be {size[1]}x{size[0]}, one is {frame.shape[1]}x{frame.shape[0]}"
                    )
                feed, resized_hw = frame_feed(self.session, frame, VIDEO_RESIZE_SCALE)
                features.append(encode(self.session, feed))
            outputs = self.session.run("tube", {tube.input_names[0]: np.concatenate(features)})
            classes, logits, queries = (outputs[n] for n in tube.output_names)
            order = linker.add(classes[0], queries[0])
            logits = torch.from_numpy(logits[0, order])
            for t in range(logits.shape[1]):
                up = upscale_masks(logits[None, :, t], size, resized_hw)[0]
                masks.append(video.QueryMasks.from_logits(up.numpy()))
            tubes.append({"end": end, "order": order, "class_logits": classes[0]})
            start = end
            if progress is not None:
                progress(end)
        class_logits = linker.class_logits()
        return video.VideoInstances(
            frames=video.video_instances(masks, class_logits, num_things=class_logits.shape[1] - 1),
            tubes=tubes,
            class_logits=class_logits,
            image_size=tuple(size),
        )
