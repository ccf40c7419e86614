"""Everything mode: the official `SamAutomaticMaskGenerator`, on any backend.

Same keyword arguments and defaults, same records in the same order. A grid of single clicks per
crop is decoded in batches; candidates (multimask tokens 1..3) are filtered by predicted IoU
(strict >), stability score (>=) and the crop-edge rule, de-duplicated by box NMS per crop and
then across crops (smaller crops win), optionally cleaned of small regions, and returned as binary
masks or COCO RLE. `timings` splits the last `generate` into encoder, decoder, mask upscaling and
post-processing seconds; `stage_counts` says how many candidates each filter left, per crop
and in total (the names of the official fixtures' instrumentation).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

from . import amg
from .errors import InputError
from .modeling.transforms import check_image
from .predictor import Predictor, TorchPredictor

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")
MASK_THRESHOLD = 0.0
# candidates left after each filter of one crop (the names of the official fixtures' instrumentation)
CROP_STAGES = ("candidates", "after_iou", "after_stability", "after_crop_edge", "after_box_nms")


@dataclass
class _Masks:
    """Surviving candidates of one batch, crop or image, in order."""

    rles: List[Dict] = field(default_factory=list)
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), dtype=np.int64))
    iou: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    stability: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    crop_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), dtype=np.int64))

    def take(self, keep: np.ndarray) -> "_Masks":
        return _Masks(
            [self.rles[i] for i in keep],
            self.boxes[keep],
            self.iou[keep],
            self.stability[keep],
            self.points[keep],
            self.crop_boxes[keep],
        )

    @staticmethod
    def cat(parts: List["_Masks"]) -> "_Masks":
        if not parts:
            return _Masks()
        return _Masks(
            [r for p in parts for r in p.rles],
            np.concatenate([p.boxes for p in parts]),
            np.concatenate([p.iou for p in parts]),
            np.concatenate([p.stability for p in parts]),
            np.concatenate([p.points for p in parts]),
            np.concatenate([p.crop_boxes for p in parts]),
        )


class MaskGenerator:
    """`SamAutomaticMaskGenerator(model, **kwargs).generate(image)` with the official semantics.

    `model` is a zoo model (run in PyTorch) or a `Predictor` (onnxruntime, Core ML, ...).
    `progress(done, total)` is called after every decoded batch.
    """

    def __init__(
        self,
        model,
        points_per_side: Optional[int] = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: Optional[List[np.ndarray]] = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        progress: Optional[Callable[[int, int], None]] = None,
    ) -> None:
        self.predictor = model if isinstance(model, Predictor) else TorchPredictor(model)
        if self.predictor.family.everything_refusal:
            raise InputError(self.predictor.family.everything_refusal)
        if (points_per_side is None) == (point_grids is None):
            raise InputError("give exactly one of points_per_side and point_grids")
        if output_mode not in OUTPUT_MODES:
            raise InputError(f"unknown output_mode {output_mode!r}; choose one of: {', '.join(OUTPUT_MODES)}")
        if points_per_batch < 1:
            raise InputError(f"points_per_batch must be at least 1, got {points_per_batch}")
        self.point_grids = (
            amg.build_all_layer_point_grids(points_per_side, crop_n_layers, crop_n_points_downscale_factor)
            if points_per_side is not None
            else [np.asarray(g, dtype=np.float64) for g in point_grids]
        )
        if len(self.point_grids) < crop_n_layers + 1:
            raise InputError(f"point_grids needs one grid per crop layer ({crop_n_layers + 1})")
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode
        self.progress = progress
        self.timings: Dict[str, float] = {}
        self.stage_counts: Dict[str, Any] = {}

    @torch.no_grad()
    def generate(self, image: np.ndarray) -> List[Dict[str, Any]]:
        """HxWx3 uint8 RGB -> records with the official keys, in the official order."""
        image = check_image(image)
        start = time.perf_counter()
        self.predictor.timings.clear()
        self._stage = {"upscale": 0.0, "postprocess": 0.0}
        image_hw = image.shape[:2]
        crop_boxes, layers = amg.generate_crop_boxes(image_hw, self.crop_n_layers, self.crop_overlap_ratio)
        self._batches_done = 0
        self._per_crop: List[Dict[str, Any]] = []
        self._batches_total = sum(
            -(-len(self.point_grids[layer]) // self.points_per_batch) for layer in layers
        )
        data = _Masks.cat(
            [self._process_crop(image, box, layer, image_hw) for box, layer in zip(crop_boxes, layers)]
        )
        post = time.perf_counter()
        if len(crop_boxes) > 1 and len(data.rles):
            widths = data.crop_boxes[:, 2] - data.crop_boxes[:, 0]
            heights = data.crop_boxes[:, 3] - data.crop_boxes[:, 1]
            scores = np.float32(1) / (widths * heights).astype(np.float32)
            data = data.take(amg.box_nms(data.boxes, scores, self.crop_nms_thresh))
        after_crop_nms = len(data.rles)
        if self.min_mask_region_area > 0:
            data = self._remove_small_regions(data)
        self.stage_counts = {
            **{stage: sum(c[stage] for c in self._per_crop) for stage in CROP_STAGES},
            "after_crop_nms": after_crop_nms,
            "per_crop": self._per_crop,
        }
        records = self._records(data)
        self._stage["postprocess"] += time.perf_counter() - post
        self.timings = {
            "encoder": self.predictor.timings["encoder"],
            "decoder": self.predictor.timings["decoder"],
            **self._stage,
            "total": time.perf_counter() - start,
        }
        return records

    def _process_crop(self, image: np.ndarray, crop_box, layer: int, image_hw) -> _Masks:
        x0, y0, x1, y1 = crop_box
        crop = image[y0:y1, x0:x1]
        crop_hw = crop.shape[:2]
        self.predictor.set_image(crop)
        self._counts = {"crop_box": list(crop_box), "layer": layer, **dict.fromkeys(CROP_STAGES[:-1], 0)}
        points = self.point_grids[layer] * np.array(crop_hw)[None, ::-1]
        batches = [
            self._process_batch(points[i : i + self.points_per_batch], crop_hw, crop_box, image_hw)
            for i in range(0, len(points), self.points_per_batch)
        ]
        post = time.perf_counter()
        data = _Masks.cat(batches)
        data = data.take(amg.box_nms(data.boxes, data.iou, self.box_nms_thresh))
        data.boxes = data.boxes + np.array([x0, y0, x0, y0])
        data.points = data.points + np.array([x0, y0])
        data.crop_boxes = np.tile(np.asarray(crop_box, dtype=np.int64), (len(data.rles), 1))
        self._per_crop.append({**self._counts, "after_box_nms": len(data.rles)})
        self._stage["postprocess"] += time.perf_counter() - post
        return data

    def _process_batch(self, points: np.ndarray, crop_hw, crop_box, image_hw) -> _Masks:
        family = self.predictor.family
        coords, labels = family.click_prompts(family.transform_coords(points, crop_hw))
        low_res, iou = self.predictor.predict(coords, labels)
        self._batches_done += 1
        if self.progress is not None:
            self.progress(self._batches_done, self._batches_total)
        iou = iou[:, 1:].flatten(0, 1)
        points = np.repeat(points, 3, axis=0)
        keep = torch.ones(len(iou), dtype=torch.bool)
        if self.pred_iou_thresh > 0.0:
            keep = iou > self.pred_iou_thresh
        self._counts["candidates"] += len(keep)
        self._counts["after_iou"] += int(keep.sum())
        # Upscaling is per mask, so upscaling only the IoU survivors gives the official logits for them.
        start = time.perf_counter()
        logits = family.postprocess_masks(low_res[:, 1:].flatten(0, 1)[keep][:, None], crop_hw)[:, 0]
        upscaled = time.perf_counter()
        self._stage["upscale"] += upscaled - start
        iou, points = iou[keep], points[keep.numpy()]
        stability = amg.stability_score(logits, MASK_THRESHOLD, self.stability_score_offset)
        if self.stability_score_thresh > 0.0:
            keep = stability >= self.stability_score_thresh
            logits, iou, points, stability = logits[keep], iou[keep], points[keep.numpy()], stability[keep]
        self._counts["after_stability"] += len(iou)
        masks = logits > MASK_THRESHOLD
        boxes = amg.masks_to_boxes(masks)
        keep = ~amg.near_crop_edge(boxes, crop_box, [0, 0, image_hw[1], image_hw[0]])
        masks, boxes = masks[keep], boxes[keep]
        keep_np = keep.numpy()
        self._counts["after_crop_edge"] += int(keep_np.sum())
        rles = amg.encode_rle(amg.uncrop_masks(masks, crop_box, image_hw).numpy())
        self._stage["postprocess"] += time.perf_counter() - upscaled
        return _Masks(
            rles,
            boxes.numpy(),
            iou[keep].numpy(),
            stability[keep].numpy(),
            points[keep_np],
            np.zeros((len(rles), 4), dtype=np.int64),
        )

    def _remove_small_regions(self, data: _Masks) -> _Masks:
        """Fill small holes, drop small islands; NMS prefers the masks that needed neither."""
        if not data.rles:
            return data
        masks, scores = [], []
        for rle in data.rles:
            mask, holes_changed = amg.remove_small_regions(
                amg.decode_rle(rle), self.min_mask_region_area, "holes"
            )
            mask, islands_changed = amg.remove_small_regions(mask, self.min_mask_region_area, "islands")
            masks.append(mask)
            scores.append(float(not (holes_changed or islands_changed)))
        boxes = amg.masks_to_boxes(torch.from_numpy(np.stack(masks))).numpy()
        keep = amg.box_nms(
            boxes, np.array(scores, dtype=np.float32), max(self.box_nms_thresh, self.crop_nms_thresh)
        )
        for i in keep:
            if scores[i] == 0.0:
                data.rles[i] = amg.encode_rle(masks[i][None])[0]
                data.boxes[i] = boxes[i]
        return data.take(keep)

    def _records(self, data: _Masks) -> List[Dict[str, Any]]:
        records = []
        for i, rle in enumerate(data.rles):
            mask = amg.decode_rle(rle)
            segmentation: Any = mask
            if self.output_mode == "uncompressed_rle":
                segmentation = amg.uncompressed_rle(mask)
            elif self.output_mode == "coco_rle":
                segmentation = rle
            records.append(
                {
                    "segmentation": segmentation,
                    "area": int(mask.sum()),
                    "bbox": amg.xyxy_to_xywh([int(v) for v in data.boxes[i]]),
                    "predicted_iou": float(data.iou[i]),
                    "point_coords": [[float(v) for v in data.points[i]]],
                    "stability_score": float(data.stability[i]),
                    "crop_box": amg.xyxy_to_xywh([int(v) for v in data.crop_boxes[i]]),
                }
            )
        return records
