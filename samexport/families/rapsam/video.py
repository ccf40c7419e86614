"""RAP-SAM's near-online video instance segmentation around its tube head (the official
`Mask2formerVideoMinVIS`), the part an app runs: tube split, query matching, class averaging and
per-frame instances with ids. NumPy, scipy and pycocotools only; SAMHarnessKit's `VideoTracks` is the
same logic in Swift, golden-tested against this module.

- `tube_ends`: the official `video_split`: clips of more than 15 frames go in tubes of 5 frames, others
  in tubes of 3; the remainder is spread over the last tubes, one frame less each (7 frames: 3, 2, 2;
  17 frames: 5, 4, 4, 4; a clip shorter than a tube is one tube).
- `TubeLinker`: each tube's 100 queries are matched to the previous tube's (already matched) queries by
  the cosine of their embeddings, Hungarian assignment (scipy's `linear_sum_assignment`), so query q is
  the same object in every tube; the class logits are averaged over the tubes.
- `QueryMasks` / `frame_instances`: per frame, mmdet's `MaskFormerFusionHead.instance_postprocess` on
  the averaged class logits and that frame's masks: the 100 best (query, class) pairs by softmax score
  among the things, mask = logits > 0, score = class score x mean mask probability, box from the mask.

Instance ids: the official code numbers each frame's instances 1..100 in the order of an unsorted
`torch.topk` (an order torch does not define). Here they are numbered in descending class score (ties:
lower query, then lower class first); the class score is the same in every frame, so an id is the same
(query, class) track in every frame, and the official ids map to these one to one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

CLIP_SIZE = 5
CLIP_SIZE_SMALL = 3
SMALL_CLIP_FRAMES = 15  # a clip of more frames uses CLIP_SIZE
MAX_INSTANCES = 100

# YouTube-VIS 2019 categories in the classifier's order (mmdet's YouTubeVISDataset, version 2019): all things
YOUTUBE_VIS_2019_CLASSES = (
    "person", "giant_panda", "lizard", "parrot", "skateboard", "sedan", "ape", "dog", "snake", "monkey",
    "hand", "rabbit", "duck", "cat", "cow", "fish", "train", "horse", "turtle", "bear", "motorbike",
    "giraffe", "leopard", "fox", "deer", "owl", "surfboard", "airplane", "truck", "zebra", "tiger",
    "elephant", "snowboard", "boat", "shark", "mouse", "frog", "eagle", "earless_seal", "tennis_racket",
)  # fmt: skip


def tube_ends(
    frames: int,
    clip_size: int = CLIP_SIZE,
    clip_size_small: int = CLIP_SIZE_SMALL,
    small_clip_frames: int = SMALL_CLIP_FRAMES,
) -> List[int]:
    """The end frame (exclusive) of every tube of a clip (the official `video_split`, no overlap)."""
    if frames < 1:
        raise ValueError(f"a clip needs at least one frame, got {frames}")
    size = clip_size if frames > small_clip_frames else clip_size_small
    splits = -(-frames // size)
    ends = [(i + 1) * size for i in range(splits)]
    excess = ends[-1] - frames
    if excess < splits:
        for i in range(excess):
            ends[splits - 1 - i] -= excess - i
    else:
        ends[-1] -= excess
    return ends


def tube_lengths(max_frames: Optional[int] = None) -> Tuple[int, ...]:
    """Every tube length `tube_ends` gives (for clips up to `max_frames`), longest first: what a tube head
    export must take."""
    lengths = set()
    for frames in range(1, (max_frames or 4 * CLIP_SIZE * CLIP_SIZE) + 1):
        ends = tube_ends(frames)
        lengths.update(np.diff([0] + ends).tolist())
    return tuple(sorted(lengths, reverse=True))


def match_queries(previous: np.ndarray, current: np.ndarray) -> np.ndarray:
    """(Q, D) embeddings of the previous (matched) tube and the current one -> the permutation `order`
    with current[order] aligned to previous: minimum total (1 - cosine), Hungarian assignment."""
    from scipy.optimize import linear_sum_assignment

    prev = np.asarray(previous, dtype=np.float32)
    cur = np.asarray(current, dtype=np.float32)
    prev = prev / np.linalg.norm(prev, axis=-1, keepdims=True)
    cur = cur / np.linalg.norm(cur, axis=-1, keepdims=True)
    cost = 1.0 - prev @ cur.T  # previous x current
    return linear_sum_assignment(cost)[1].astype(np.int64)


class TubeLinker:
    """Links tubes as they come: `add` a tube's class logits and query embeddings, get the order that
    aligns its queries (and its masks) to the first tube's."""

    def __init__(self) -> None:
        self.orders: List[np.ndarray] = []
        self._class_logits: List[np.ndarray] = []
        self._previous: Optional[np.ndarray] = None

    def add(self, class_logits: np.ndarray, queries: np.ndarray) -> np.ndarray:
        """class_logits (Q, C + 1), queries (Q, D) of one tube -> its order (Q,)."""
        class_logits = np.asarray(class_logits, dtype=np.float32)
        queries = np.asarray(queries, dtype=np.float32)
        order = np.arange(len(queries)) if self._previous is None else match_queries(self._previous, queries)
        self._previous = queries[order]
        self._class_logits.append(class_logits[order])
        self.orders.append(order)
        return order

    def class_logits(self) -> np.ndarray:
        """(Q, C + 1): the matched class logits averaged over the tubes so far."""
        if not self._class_logits:
            raise ValueError("no tube added yet")
        total = np.zeros_like(self._class_logits[0])
        for logits in self._class_logits:
            total = total + logits
        return total / np.float32(len(self._class_logits))


@dataclass
class QueryMasks:
    """One frame's mask of every query at the output size, summarised: what its instances need."""

    rles: List[Dict]  # COCO compressed RLE per query
    areas: np.ndarray  # (Q,) pixels with logit > 0
    boxes: np.ndarray  # (Q, 4) float32 xyxy, exclusive max (mmdet's mask2bbox); zeros for an empty mask
    mask_scores: np.ndarray  # (Q,) float32 mean sigmoid over the mask (0 for an empty mask)

    @classmethod
    def from_logits(cls, mask_logits) -> "QueryMasks":
        """(Q, H, W) mask logits at the output size (numpy or torch)."""
        from ...amg import encode_rle

        logits = np.asarray(mask_logits, dtype=np.float32)
        binary = logits > 0
        probs = 1.0 / (1.0 + np.exp(-logits))
        flat = binary.reshape(len(binary), -1)
        areas = flat.sum(1)
        scores = (probs * binary).reshape(len(binary), -1).sum(1, dtype=np.float32) / (
            areas.astype(np.float32) + np.float32(1e-6)
        )
        return cls(encode_rle(binary), areas.astype(np.int64), mask_boxes(binary), scores.astype(np.float32))


def mask_boxes(binary: np.ndarray) -> np.ndarray:
    """(Q, H, W) bool -> (Q, 4) float32 [x0, y0, x1 + 1, y1 + 1] of each mask's pixels."""
    boxes = np.zeros((len(binary), 4), np.float32)
    cols, rows = binary.any(1), binary.any(2)
    for i in range(len(binary)):
        xs, ys = np.flatnonzero(cols[i]), np.flatnonzero(rows[i])
        if len(xs) and len(ys):
            boxes[i] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return boxes


@dataclass(frozen=True)
class Candidates:
    """The clip's instances: the best (query, class) pairs by class score, in id order (id = index + 1)."""

    queries: np.ndarray  # (K,) int64
    labels: np.ndarray  # (K,) int64
    class_scores: np.ndarray  # (K,) float32 softmax probability


def candidates(class_logits: np.ndarray, num_things: int, max_instances: int = MAX_INSTANCES) -> Candidates:
    """(Q, C + 1) averaged class logits (last column: no object) -> the best `max_instances` (query, class)
    pairs over all classes, then the things among them."""
    logits = np.asarray(class_logits, dtype=np.float32)
    shifted = logits - logits.max(-1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(-1, keepdims=True)
    scores = probs[:, :-1].reshape(-1)
    classes = logits.shape[1] - 1
    top = np.lexsort((np.arange(len(scores)), -scores))[:max_instances]
    labels = top % classes
    keep = labels < num_things
    top = top[keep]
    return Candidates(top // classes, labels[keep], scores[top].astype(np.float32))


def frame_instances(found: Candidates, masks: QueryMasks) -> List[Dict]:
    """One frame's instances: id, query, label, score (class score x mask score), box, area, RLE."""
    return [
        {
            "id": k + 1,
            "query": int(q),
            "label": int(label),
            "score": float(np.float32(score) * masks.mask_scores[q]),
            "class_score": float(score),
            "box": [float(v) for v in masks.boxes[q]],
            "area": int(masks.areas[q]),
            "rle": masks.rles[q],
        }
        for k, (q, label, score) in enumerate(zip(found.queries, found.labels, found.class_scores))
    ]


def video_instances(
    frames_masks: Sequence[QueryMasks], class_logits: np.ndarray, num_things: int
) -> List[List[Dict]]:
    """Every frame's instances from the per-frame query masks (in the matched query order) and the
    averaged class logits."""
    found = candidates(class_logits, num_things)
    return [frame_instances(found, masks) for masks in frames_masks]


@dataclass
class VideoInstances:
    """A clip's video instance segmentation."""

    frames: List[List[Dict]]  # per frame: its instances (`frame_instances`), id order
    tubes: List[Dict]  # per tube: "end" (exclusive frame), "order" (its query matching), raw "class_logits"
    class_logits: np.ndarray  # (Q, C + 1) matched class logits averaged over the tubes
    image_size: Tuple[int, int]  # (H, W) of the frames

    def tracks(self) -> List[Dict]:
        """One entry per instance id across the clip (YouTube-VIS's result format, masks as RLE per frame):
        id, label, class score, per-frame score and RLE."""
        if not self.frames:
            return []
        return [
            {
                "id": first["id"],
                "query": first["query"],
                "label": first["label"],
                "class_score": first["class_score"],
                "scores": [frame[k]["score"] for frame in self.frames],
                "segmentations": [frame[k]["rle"] for frame in self.frames],
            }
            for k, first in enumerate(self.frames[0])
        ]
