"""SAM 2's video predictor as a pipeline over a session: objects prompted on any frame, corrections, the
memory bank, propagation forwards and backwards. The parts (modules.py) are stateless; this holds the state,
as the official predictor does, and calls `session.run` only, so it runs on PyTorch and on every export.

Semantics are the official `SAM2VideoPredictor`'s (sam2 at 2b90b9f, per-object state), with the predictor
options of the parity fixtures: hole filling of 8 pixels, corrections become conditioning frames
(`add_all_frames_to_correct_as_cond=True`, Meta's own setting; False discards a correction at the next
propagation, facebookresearch/sam2#719), memories kept in bfloat16. The memory bank is fixed-size slots
(`TrackerConfig.memory_slots`): the conditioning frames closest in time fill `cond_slots` of them (the
official `max_cond_frames_in_attn`; its default attends to every conditioning frame), the 6 most recent
tracked frames the rest.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ...errors import InputError, UsageError
from ...modeling import transforms
from ...runtime import Session
from .modules import pack_points

NO_OBJ_SCORE = -1024.0
TRACKER_PARTS = ("encoder", "prompt_decoder", "track_decoder", "memory_attention", "memory_encoder")


@dataclass(frozen=True)
class TrackerConfig:
    """The memory bank's sizes and the predictor's options."""

    num_maskmem: int = 7  # the model's temporal rows: conditioning frames' memories at row 6, recent at 0..5
    cond_slots: int = 2  # slots for conditioning frames (the closest ones in time when there are more)
    # the memories of this many most recent tracked frames, the one t frames back at row t - 1 (the official
    # num_maskmem - 1; fewer make a small memory bank, which is not the official configuration)
    recent_frames: int = 6
    max_obj_ptrs: int = 16
    fill_hole_area: int = 8
    add_all_frames_to_correct_as_cond: bool = True
    image_size: int = 1024
    stability_delta: float = 0.05
    stability_thresh: float = 0.98

    def __post_init__(self) -> None:
        # the official selection of conditioning frames keeps the closest one before and after the frame
        if self.cond_slots < 2 or not 0 <= self.recent_frames < self.num_maskmem or self.max_obj_ptrs < 1:
            raise UsageError(
                "a tracker needs cond_slots >= 2, recent_frames from 0 to num_maskmem - 1 and max_obj_ptrs "
                f">= 1; got {self.cond_slots}, {self.recent_frames} (num_maskmem {self.num_maskmem}) and "
                f"{self.max_obj_ptrs}"
            )

    @property
    def memory_slots(self) -> int:
        return self.cond_slots + self.recent_frames

    @property
    def pointer_slots(self) -> int:
        return self.cond_slots + self.max_obj_ptrs - 1


@dataclass
class FrameOutput:
    """One object's result on one frame: the stored (hole-filled) low-res mask, the object pointer and score,
    its memory (bfloat16 values) once encoded, and which mask token was chosen."""

    pred_masks: np.ndarray  # (1, 1, 256, 256)
    obj_ptr: np.ndarray  # (256,)
    object_score: float
    memory: Optional[np.ndarray] = None  # (512, 64)
    mask_token: int = 0
    ious: Optional[np.ndarray] = None
    multimask: bool = True


@dataclass
class ObjectState:
    cond: Dict[int, FrameOutput] = field(default_factory=dict)
    non_cond: Dict[int, FrameOutput] = field(default_factory=dict)
    temp_cond: Dict[int, FrameOutput] = field(default_factory=dict)
    temp_non_cond: Dict[int, FrameOutput] = field(default_factory=dict)
    points: Dict[int, Tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    tracked: Dict[int, bool] = field(default_factory=dict)  # frame -> tracked in reverse

    def output_at(self, frame_idx: int) -> Optional[FrameOutput]:
        """The latest output on a frame: a prompt's not yet propagated, else the stored one (None: none)."""
        for outputs in (self.temp_cond, self.temp_non_cond, self.cond, self.non_cond):
            if frame_idx in outputs:
                return outputs[frame_idx]
        return None


class InferenceState:
    """A clip and its objects (what the official `init_state` returns)."""

    def __init__(self, frames: Sequence[np.ndarray]) -> None:
        if not len(frames):
            raise InputError("the clip has no frames; give a folder of JPEG frames or a video file")
        shapes = {tuple(f.shape) for f in frames}
        if len(shapes) > 1:
            raise InputError(
                f"the clip's frames differ in size ({sorted(shapes)[:2]}); give frames of one size"
            )
        self.frames = list(frames)
        self.video_height, self.video_width = frames[0].shape[:2]
        self.objects: "OrderedDict[int, ObjectState]" = OrderedDict()
        self.features: "OrderedDict[int, Dict[str, np.ndarray]]" = OrderedDict()
        self.tracking_has_started = False

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def obj_ids(self) -> List[int]:
        return list(self.objects)


def load_frames(video_path) -> List[np.ndarray]:
    """A folder of `<number>.jpg` frames (the official loader's layout) or a video file -> RGB uint8
    frames."""
    from ...clips import open_clip

    return list(open_clip(Path(video_path)).frames())


def round_bfloat16(x: np.ndarray) -> np.ndarray:
    """float32 values rounded to bfloat16 (nearest, ties to even), as float32: how the official predictor
    stores memories."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return rounded.astype(np.uint32).view(np.float32)


def fill_holes(mask: np.ndarray, max_area: int) -> np.ndarray:
    """Background (<= 0) 8-connected components of at most `max_area` pixels of a (..., h, w) mask set to 0.1
    (the official `fill_holes_in_mask_scores`, as its CUDA kernel computes it)."""
    from ...amg import remove_small_regions  # scipy: only when a frame is decoded

    out = mask.copy()
    for index in np.ndindex(mask.shape[:-2]):
        foreground = mask[index] > 0
        filled, changed = remove_small_regions(foreground, max_area + 1, "holes")
        if changed:
            out[index][filled & ~foreground] = np.float32(0.1)
    return out


class VideoTracker:
    """The official video predictor's calls over a session that has the tracker's parts."""

    def __init__(self, session: Session, config: TrackerConfig = TrackerConfig()) -> None:
        session.require(*TRACKER_PARTS)
        self.session, self.config = session, config
        # the tensor sizes come from the parts' interfaces; the slot counts from the config, which an
        # export's fixed shapes must match (PyTorch's modules take any)
        self.memory_shape = self._shape("memory_attention", "memory")[1:]  # (tokens, channels)
        self.pointer_dim = self._shape("memory_attention", "objectPointers")[1]
        self.mask_shape = self._shape("prompt_decoder", "maskInput")
        if session.backend != "torch":
            fixed = (
                self._shape("memory_attention", "memory")[0],
                self._shape("memory_attention", "objectPointers")[0],
            )
            if fixed != (config.memory_slots, config.pointer_slots):
                raise UsageError(
                    f"{session.source or 'the export'} takes {fixed[0]} memory and {fixed[1]} pointer "
                    f"slots; the tracker config asks for {config.memory_slots} and {config.pointer_slots}: "
                    "use the export's"
                )

    def _shape(self, part: str, name: str) -> Tuple:
        return next(t.shape for t in self.session.interfaces[part].inputs if t.name == name)

    # -- the official API --------------------------------------------------------------------------------
    def init_state(self, video_path=None, frames: Optional[Sequence[np.ndarray]] = None) -> InferenceState:
        if (video_path is None) == (frames is None):
            raise UsageError(
                "init_state takes video_path (a folder of JPEG frames or a video file) or frames"
            )
        state = InferenceState(load_frames(video_path) if frames is None else frames)
        self._features(state, 0)
        return state

    def reset_state(self, state: InferenceState) -> None:
        state.objects.clear()
        state.tracking_has_started = False

    def add_new_points_or_box(
        self,
        state: InferenceState,
        frame_idx: int,
        obj_id: int,
        points=None,
        labels=None,
        clear_old_points: bool = True,
        normalize_coords: bool = True,
        box=None,
    ):
        """Prompt `obj_id` on `frame_idx` -> (frame_idx, obj_ids, masks (objects, 1, H, W) logits)."""
        if not 0 <= int(frame_idx) < state.num_frames:
            raise InputError(
                f"frame {frame_idx} is not in the clip (it has frames 0..{state.num_frames - 1})"
            )
        if (points is None) != (labels is None):
            raise InputError("points and labels must be given together")
        if points is None and box is None:
            raise InputError("give points (with labels) or a box")
        obj = self._object(state, obj_id)
        coords = (
            np.zeros((0, 2), np.float32) if points is None else np.asarray(points, np.float32).reshape(-1, 2)
        )
        point_labels = (
            np.zeros((0,), np.float32) if labels is None else np.asarray(labels, np.float32).reshape(-1)
        )
        if len(coords) != len(point_labels):
            raise InputError(f"{len(coords)} points but {len(point_labels)} labels; give one label per point")
        if box is not None:
            if not clear_old_points:
                raise UsageError("a box must come before any point: use clear_old_points=True with a box")
            coords = np.concatenate([np.asarray(box, np.float32).reshape(2, 2), coords])
            point_labels = np.concatenate([np.array([2, 3], np.float32), point_labels])
        if normalize_coords:
            coords = coords / np.array([state.video_width, state.video_height], np.float32)
        coords = (coords * np.float32(self.config.image_size)).astype(np.float32)
        if not clear_old_points and frame_idx in obj.points:
            old_coords, old_labels = obj.points[frame_idx]
            coords, point_labels = (
                np.concatenate([old_coords, coords]),
                np.concatenate([old_labels, point_labels]),
            )
        obj.points[frame_idx] = (coords, point_labels)
        is_init_cond = frame_idx not in obj.tracked
        reverse = False if is_init_cond else obj.tracked[frame_idx]
        is_cond = is_init_cond or self.config.add_all_frames_to_correct_as_cond
        temp = obj.temp_cond if is_cond else obj.temp_non_cond
        prev = temp.get(frame_idx) or obj.cond.get(frame_idx) or obj.non_cond.get(frame_idx)
        prev_mask = None if prev is None else np.clip(prev.pred_masks, -32.0, 32.0)
        temp[frame_idx] = self._run_frame(
            state, obj, frame_idx, is_init_cond, (coords, point_labels), reverse, False, prev_mask
        )
        masks = [self._video_res(state, other.output_at(frame_idx)) for other in state.objects.values()]
        return frame_idx, state.obj_ids, np.stack(masks)

    def propagate_in_video(
        self,
        state: InferenceState,
        start_frame_idx: Optional[int] = None,
        max_frame_num_to_track: Optional[int] = None,
        reverse: bool = False,
    ) -> Iterator[Tuple[int, List[int], np.ndarray]]:
        """Track every object -> (frame_idx, obj_ids, masks (objects, 1, H, W) logits) per frame."""
        self._preflight(state)
        num_frames = state.num_frames
        if start_frame_idx is None:
            start_frame_idx = min(t for obj in state.objects.values() for t in obj.cond)
        if not 0 <= start_frame_idx < num_frames:
            raise InputError(f"start frame {start_frame_idx} is not in the clip (frames 0..{num_frames - 1})")
        if max_frame_num_to_track is None:
            max_frame_num_to_track = num_frames
        if reverse:
            end = max(start_frame_idx - max_frame_num_to_track, 0)
            order = range(start_frame_idx, end - 1, -1) if start_frame_idx > 0 else range(0)
        else:
            end = min(start_frame_idx + max_frame_num_to_track, num_frames - 1)
            order = range(start_frame_idx, end + 1)
        for frame_idx in order:
            masks = []
            for obj in state.objects.values():
                if frame_idx in obj.cond:
                    out = obj.cond[frame_idx]
                else:
                    out = self._run_frame(state, obj, frame_idx, False, None, reverse, True, None)
                    obj.non_cond[frame_idx] = out
                obj.tracked[frame_idx] = reverse
                masks.append(self._video_res(state, out))
            yield frame_idx, state.obj_ids, np.stack(masks)

    # -- the steps ---------------------------------------------------------------------------------------
    def _object(self, state: InferenceState, obj_id: int) -> ObjectState:
        if obj_id in state.objects:
            return state.objects[obj_id]
        if state.tracking_has_started:
            raise UsageError(
                f"cannot add object {obj_id} after tracking has started; call reset_state first "
                f"(the objects are {state.obj_ids})"
            )
        state.objects[obj_id] = ObjectState()
        return state.objects[obj_id]

    def _features(self, state: InferenceState, frame_idx: int) -> Dict[str, np.ndarray]:
        cached = state.features.get(frame_idx)
        if cached is None:
            frame, size = state.frames[frame_idx], self.config.image_size
            if self.session.interfaces["encoder"].inputs[0].image:  # 0..255 pixels, normalised inside
                image = transforms.sam2_video_resize(frame, size).transpose(2, 0, 1)[None].astype(np.float32)
            else:
                image = np.asarray(transforms.sam2_video_preprocess(frame, size))
            cached = self.session.run("encoder", {"image": image})
            state.features[frame_idx] = cached
            while len(state.features) > 2:
                state.features.popitem(last=False)
        state.features.move_to_end(frame_idx)
        return cached

    def _video_res(self, state: InferenceState, out: Optional[FrameOutput]) -> np.ndarray:
        if out is None:
            return np.full((1, state.video_height, state.video_width), NO_OBJ_SCORE, np.float32)
        import torch

        low_res = torch.from_numpy(out.pred_masks)
        return transforms.sam2_postprocess_masks(low_res, (state.video_height, state.video_width))[0].numpy()

    def _run_frame(self, state, obj, frame_idx, is_init_cond, prompt, reverse, run_mem_encoder, prev_mask):
        feats = self._features(state, frame_idx)
        high_res = {k: feats[k] for k in ("highResFeatures0", "highResFeatures1")}
        if is_init_cond:
            pix = feats["visionFeatures"]
        else:
            pix = self._attend_memory(state, obj, frame_idx, feats["visionFeatures"], reverse)
        if prompt is None:
            out = self.session.run("track_decoder", {"pixFeatures": pix, **high_res})
            num_points = 0
        else:
            coords, labels = prompt
            pad_coords = np.concatenate([coords, np.zeros((1, 2), np.float32)])[None]
            pad_labels = np.concatenate([labels, -np.ones(1, np.float32)])[None]
            has_mask = prev_mask is not None
            packed = "points" in self.session.interfaces["prompt_decoder"].input_names
            out = self.session.run(
                "prompt_decoder",
                {
                    "pixFeatures": pix,
                    **high_res,
                    **(
                        {"points": pack_points(pad_coords, pad_labels)}
                        if packed
                        else {"pointCoords": pad_coords, "pointLabels": pad_labels}
                    ),
                    "maskInput": prev_mask if has_mask else np.zeros(self.mask_shape, np.float32),
                    "hasMaskInput": np.array([1.0 if has_mask else 0.0], np.float32),
                    "noMemory": np.array([1.0 if is_init_cond else 0.0], np.float32),
                },
            )
            num_points = len(labels)
        masks, ious, pointers = out["lowResMasks"][0], out["iouScores"][0], out["objectPointers"][0]
        multimask = num_points <= 1
        token, pointer_token = choose_token(masks, ious, multimask, self.config)
        pointer = pointers[pointer_token]
        chosen = masks[token][None, None]
        result = FrameOutput(
            pred_masks=fill_holes(chosen, self.config.fill_hole_area)
            if self.config.fill_hole_area > 0
            else chosen,
            obj_ptr=pointer.astype(np.float32),
            object_score=float(out["objectScore"].reshape(-1)[0]),
            mask_token=token,
            ious=ious[1:] if multimask else ious[token : token + 1],
            multimask=multimask,
        )
        if run_mem_encoder:
            result.memory = self._encode_memory(feats, chosen, binarize=prompt is not None)
        return result

    def _encode_memory(self, feats, mask_logits: np.ndarray, binarize: bool) -> np.ndarray:
        out = self.session.run(
            "memory_encoder",
            {
                "visionFeatures": feats["visionFeatures"],
                "maskLogits": mask_logits,
                "binarize": np.array([1.0 if binarize else 0.0], np.float32),
            },
        )
        return round_bfloat16(out["memory"][0])

    def _preflight(self, state: InferenceState) -> None:
        if not state.objects:
            raise UsageError("no objects to track; add points or a box first (add_new_points_or_box)")
        state.tracking_has_started = True
        for obj_id, obj in state.objects.items():
            for temp, stored in ((obj.temp_non_cond, obj.non_cond), (obj.temp_cond, obj.cond)):
                for frame_idx, out in temp.items():
                    if out.memory is None:
                        out.memory = self._encode_memory(
                            self._features(state, frame_idx), out.pred_masks, binarize=True
                        )
                    stored[frame_idx] = out
                temp.clear()
            if not obj.cond:
                raise UsageError(f"object {obj_id} has no prompt; add points or a box for it first")
            for frame_idx in obj.cond:
                obj.non_cond.pop(frame_idx, None)

    # -- the memory bank ---------------------------------------------------------------------------------
    def memory_bank(self, state: InferenceState, obj: ObjectState, frame_idx: int, reverse: bool):
        """The official memory selection for one object on one frame -> ([(temporal row, output)],
        [object pointers])."""
        cfg = self.config
        selected, unselected = select_closest_cond_frames(frame_idx, obj.cond, cfg.cond_slots)
        memories = [(cfg.num_maskmem - 1, out) for out in selected.values()]
        sign = 1 if reverse else -1
        for t in range(cfg.recent_frames, 0, -1):  # the farthest first, as the official loop
            prev = frame_idx + sign * t
            out = obj.non_cond.get(prev) or unselected.get(prev)
            if out is not None:
                memories.append((t - 1, out))
        pointers = [
            out.obj_ptr for t, out in selected.items() if (t >= frame_idx if reverse else t <= frame_idx)
        ]
        for t_diff in range(1, min(state.num_frames, cfg.max_obj_ptrs)):
            t = frame_idx + sign * t_diff
            if t < 0 or t >= state.num_frames:
                break
            out = obj.non_cond.get(t) or unselected.get(t)
            if out is not None:
                pointers.append(out.obj_ptr)
        return memories, pointers

    def _attend_memory(self, state, obj, frame_idx, vision_features, reverse) -> np.ndarray:
        cfg = self.config
        memories, pointers = self.memory_bank(state, obj, frame_idx, reverse)
        slots, pointer_slots = cfg.memory_slots, cfg.pointer_slots
        memory = np.zeros((slots, *self.memory_shape), np.float32)
        temporal = np.zeros((slots, cfg.num_maskmem), np.float32)
        memory_valid = np.zeros((slots,), np.float32)
        for i, (row, out) in enumerate(memories):
            memory[i], temporal[i, row], memory_valid[i] = out.memory, 1.0, 1.0
        pointer_array = np.zeros((pointer_slots, self.pointer_dim), np.float32)
        pointer_valid = np.zeros((pointer_slots,), np.float32)
        for i, pointer in enumerate(pointers):
            pointer_array[i], pointer_valid[i] = pointer, 1.0
        out = self.session.run(
            "memory_attention",
            {
                "visionFeatures": vision_features,
                "memory": memory,
                "memoryTemporal": temporal,
                "memoryValid": memory_valid,
                "objectPointers": pointer_array,
                "pointerValid": pointer_valid,
            },
        )
        return out["pixFeatures"]


def choose_token(
    masks: np.ndarray, ious: np.ndarray, multimask: bool, config: TrackerConfig
) -> Tuple[int, int]:
    """The official heads' choice among the 4 mask tokens -> (the mask's token, the pointer's token).
    Multimask (at most one point): the best of tokens 1..3 by IoU for both. Otherwise token 0 unless its mask
    is unstable (IoU of logits > delta and > -delta below the threshold), then the best of 1..3; the pointer
    always from token 0."""
    if multimask:
        best = 1 + int(np.argmax(ious[1:]))
        return best, best
    logits = masks[0]
    area_i = np.float32(np.count_nonzero(logits > config.stability_delta))
    area_u = np.float32(np.count_nonzero(logits > -config.stability_delta))
    stability = area_i / area_u if area_u > 0 else np.float32(1.0)
    stable = bool(stability >= np.float32(config.stability_thresh))
    return (0 if stable else 1 + int(np.argmax(ious[1:]))), 0


def select_closest_cond_frames(frame_idx: int, cond: Dict[int, FrameOutput], max_num: int):
    """The official choice of conditioning frames when there are more than `max_num`: the closest before,
    the closest at or after, then the closest others -> (selected, unselected), insertion order kept."""
    if max_num < 0 or len(cond) <= max_num:
        return dict(cond), {}
    chosen = []
    before = max((t for t in cond if t < frame_idx), default=None)
    if before is not None:
        chosen.append(before)
    after = min((t for t in cond if t >= frame_idx), default=None)
    if after is not None:
        chosen.append(after)
    rest = sorted((t for t in cond if t not in chosen), key=lambda t: abs(t - frame_idx))
    chosen += rest[: max_num - len(chosen)]
    selected = {t: cond[t] for t in chosen}
    return selected, {t: out for t, out in cond.items() if t not in selected}
