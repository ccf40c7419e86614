"""The RAP-SAM family: one ResNet-50 + deformable-neck encoder, a query head for prompts (one query
per click or box, no negative clicks, no mask prompt) and for panoptic segmentation (100 object
queries classified against an open-vocabulary text classifier that is not in the checkpoint)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch
from torch import nn

from ...errors import CheckpointError, UsageError
from ...modeling import transforms
from ...modeling.rapsam import (
    RESIZE_SCALE,
    RapSam,
    letterbox_canvas,
    official_input,
    resize_scale,
    resized_shape,
)
from ...modeling.rapsam_head import CLIP_DIM, NUM_CLASSES, PROTOTYPES, VIDEO_CLASSES
from ..base import PromptFamily, fp16_megabytes
from ..registry import register_family
from .parts import RapSamParts

CLASSIFIER_FILE = "convnext_large_d_320_CocoPanopticOVDataset.pth"
CLASSIFIER_SHAPE = (NUM_CLASSES, PROTOTYPES, CLIP_DIM)
CLASSIFIER_FILL_KEY = "ov_classifier.convnext_large_d_320_CocoPanopticOVDataset"
VIDEO_CLASSIFIER_FILE = "convnext_large_d_320_YouTubeVISDataset_2019.pth"
VIDEO_CLASSIFIER_SHAPE = (VIDEO_CLASSES, PROTOTYPES, CLIP_DIM)
VIDEO_CLASSIFIER_FILL_KEY = "ov_classifier.convnext_large_d_320_YouTubeVISDataset_2019"
CLASSIFIER_HELP = (
    f"a float32 tensor saved with torch.save, L2-normalised over the last dimension: {CLASSIFIER_SHAPE} "
    f"for COCO panoptic (panoptic segmentation) or {VIDEO_CLASSIFIER_SHAPE} for YouTube-VIS 2019 (video); "
    f"RAP-SAM's tools/gen_cls.py writes them as ~/.cache/embd/{CLASSIFIER_FILE} and {VIDEO_CLASSIFIER_FILE}"
)
DEFAULT_INPUT_SIZE = (800, 1088)  # (h, w): a 4:3 landscape image resized the official way, padded to /32


def read_classifier(path: str | Path) -> torch.Tensor:
    """The (133, 17, 768) class-embedding file, read without unpickling code and checked."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"classifier {path} does not exist; pass {CLASSIFIER_HELP}")
    try:
        tensor = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # the unpickler and the zip reader raise anything
        raise CheckpointError(
            f"classifier {path} is not a readable torch tensor file ({type(e).__name__}); "
            f"pass {CLASSIFIER_HELP}"
        ) from None
    if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) not in (
        CLASSIFIER_SHAPE,
        VIDEO_CLASSIFIER_SHAPE,
    ):
        what = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise CheckpointError(f"classifier {path} holds {what}; expected {CLASSIFIER_HELP}")
    tensor = tensor.float()
    norms = tensor.norm(p=2, dim=-1)
    if not bool(torch.isfinite(tensor).all()) or not torch.allclose(norms, torch.ones_like(norms)):
        raise CheckpointError(
            f"classifier {path} is not L2-normalised over its last dimension (norms "
            f"{float(norms.min()):.4g}..{float(norms.max()):.4g}); "
            "normalise it: t / t.norm(dim=-1, keepdim=True)"
        )
    return tensor


def fill_classifier(fill: Callable[[str, torch.Tensor], torch.Tensor], video: bool = False) -> torch.Tensor:
    """A fixture classifier (COCO panoptic, or YouTube-VIS with `video`): the weights' fill rule for its
    key, then L2-normalised."""
    key, shape = (
        (VIDEO_CLASSIFIER_FILL_KEY, VIDEO_CLASSIFIER_SHAPE)
        if video
        else (CLASSIFIER_FILL_KEY, CLASSIFIER_SHAPE)
    )
    t = fill(key, torch.empty(shape))
    return t / t.norm(p=2, dim=-1, keepdim=True)


def install_classifier(model: RapSam, classes: torch.Tensor) -> None:
    """(133, 17, 768) or (40, 17, 768) -> the head's (768, classes + 1, 17) buffer for that class set
    (`classifier` or `video_classifier`) with the zero no-object prototype appended."""
    video = tuple(classes.shape) == VIDEO_CLASSIFIER_SHAPE
    buffer = model.panoptic_head.video_classifier if video else model.panoptic_head.classifier
    with torch.no_grad():
        full = torch.cat([classes, torch.zeros(1, PROTOTYPES, CLIP_DIM)])
        buffer.copy_(full.permute(2, 0, 1))
    if video:
        model.has_video_classifier = True
    else:
        model.has_classifier = True


class RapSamFamily(RapSamParts, PromptFamily):
    """Official mmdet test pipeline (OpenCV resize to fit 1333x800, pad to /32), xyxy prompts in the
    resized frame, stride-4 mask logits upscaled through the padded input size."""

    name = "rapsam"
    decoder_title = "RAP-SAM prompt adaptor"
    model_class = RapSam
    pixel_mean_255 = transforms.SAM_PIXEL_MEAN
    pixel_std_255 = transforms.SAM_PIXEL_STD
    default_input_size = DEFAULT_INPUT_SIZE
    prompts_are_queries = True
    bench_parts = ("encoder", "decoder", "panoptic", "tube")
    everything_refusal = (
        "RAP-SAM has no click-grid everything mode: its panoptic head segments everything "
        "(segment --everything; samexport.families.rapsam.pipelines.PanopticPipeline)"
    )
    extras = ("classifier",)

    def build(self, image_encoder: nn.Module) -> nn.Module:
        return RapSam(image_encoder)

    def segmenter(self, mode: str) -> Optional[Callable]:
        """Prompts as queries and the panoptic head (`segment.run`); video instances (`video_segment`)."""
        if mode == "image":
            from .segment import run

            return run
        if mode == "video":
            from .video_segment import segment_video

            return segment_video
        return None

    def load_extras(self, model: nn.Module, fill, classifier: Optional[str | Path] = None) -> None:
        """The classifier file (its shape says whether it is COCO panoptic's or YouTube-VIS's: the other
        path then refuses); else both fixture fills when the weights are filled (`fill` given); else none,
        and panoptic and video segmentation refuse."""
        model.has_classifier = model.has_video_classifier = False
        if classifier is not None:
            install_classifier(model, read_classifier(classifier))
        elif fill is not None:
            install_classifier(model, fill_classifier(fill))
            install_classifier(model, fill_classifier(fill, video=True))

    def class_sets(self, options) -> Tuple[str, ...]:
        """The class sets whose heads an export writes ("coco_panoptic": the panoptic head, "youtube_vis":
        the tube head): the heads hold the class embeddings, so the one --classifier names (its shape says
        which), or both fixture fills for filled weights, or none."""
        if options.classifier is not None:
            video = tuple(read_classifier(options.classifier).shape) == VIDEO_CLASSIFIER_SHAPE
            return ("youtube_vis",) if video else ("coco_panoptic",)
        return ("coco_panoptic", "youtube_vis") if options.checkpoint is None else ()

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        return official_input(image)[0]

    def input_contract(self, input_hw: Tuple[int, int] = DEFAULT_INPUT_SIZE) -> Dict:
        return {
            "family": self.name,
            "model_input_size": list(input_hw),
            "letterbox": f"a fixed {input_hw[0]}x{input_hw[1]} input: s = min(1333 / max(H, W), "
            f"800 / min(H, W), {input_hw[0]} / H, {input_hw[1]} / W), image top-left, padded bottom/right; "
            "equal to the official pipeline when its padded size (a multiple of 32) is this size "
            "(4:3 landscape at 800x1088), otherwise the wider padding also changes the neck's "
            "coordinate channels",
            "pad_color_rgb": [round(m) for m in self.pixel_mean_255],
            "resize": f"keep the aspect ratio to fit {RESIZE_SCALE[0]}x{RESIZE_SCALE[1]}: "
            "s = min(1333 / max(H, W), 800 / min(H, W)), new size = int(side * s + 0.5), "
            "OpenCV INTER_LINEAR on uint8",
            "pixel_mean": list(self.pixel_mean_255),
            "pixel_std": list(self.pixel_std_255),
            "pixel_scale": "0..255",
            "padding": "bottom and right with zeros after normalising (the mean colour before), "
            "to a multiple of 32",
            "coordinate_frame": "(x, y) pixels of the resized, unpadded image",
            "prompt_layout": "one xyxy box per prompt; a click (x, y) is [x - 3, y - 3, x + 3, y + 3] after "
            "scaling by (new_w / W, new_h / H); no negative clicks, no mask prompt; prompts are independent",
            "prompt_normalisation": "by the resized, unpadded (h, w)",
            "mask_upscaling": "bilinear to the padded input size, crop to new_h x new_w, bilinear to H x W, "
            "logits > 0",
            "mask_threshold": 0.0,
            "panoptic": "100 queries x 134 class logits (133 COCO panoptic classes + no object) and mask "
            "logits; fusion in the app (samexport.families.rapsam.panoptic.fuse)",
            "classifier": CLASSIFIER_HELP,
        }

    def app_canvas(
        self,
        image: np.ndarray,
        input_hw: Tuple[int, int] = DEFAULT_INPUT_SIZE,
        fit: Tuple[int, int] = RESIZE_SCALE,
    ) -> np.ndarray:
        return letterbox_canvas(image, input_hw, fit)

    def image_input_text(self) -> str:
        contract = self.input_contract()
        return (
            f"RGB. {contract['resize']}; padding: {contract['padding']}. Normalization is inside the model."
        )

    def transform_coords(self, coords, original_hw: Tuple[int, int]) -> torch.Tensor:
        """(..., 2) original pixels -> the resized frame (float32 scaling, as mmdet rescales boxes)."""
        return torch.as_tensor(np.asarray(coords), dtype=torch.float32) * resize_scale(original_hw)

    def postprocess_masks(self, low_res: torch.Tensor, original_hw: Tuple[int, int]) -> torch.Tensor:
        from ...modeling.rapsam import upscale_masks

        return upscale_masks(low_res, original_hw, resized_shape(*original_hw))

    def bench_sizes(self, part: str, points) -> Tuple[Optional[int], ...]:
        """The tube head at every tube length the official split gives (frames); other parts as usual."""
        if part == "tube":
            from .video import tube_lengths

            return tube_lengths()
        return super().bench_sizes(part, points)

    def param_counts(self, model: nn.Module) -> Dict[str, int]:
        """Encoder = backbone + neck; decoder = the query head (prompt and panoptic paths share it)."""
        encoder = sum(p.numel() for m in (model.backbone, model.neck) for p in m.parameters())
        decoder = sum(p.numel() for p in model.panoptic_head.parameters())
        return {"encoder": encoder, "decoder": decoder, "total": encoder + decoder}

    def model_facts(self, model: nn.Module, gmacs) -> Dict:
        """At the default input (800x1088): the encoder, one prompt through the prompt path, and the
        panoptic path (100 queries). grid_sample's bilinear taps are not counted (the DCN's 3x3
        multiply-adds are)."""
        h, w = DEFAULT_INPUT_SIZE
        image = torch.empty(1, 3, h, w)
        features = torch.empty(1, 256, h // 4, w // 4)
        head = model.panoptic_head
        prompt = torch.empty(1, 1, 4)

        def run_prompt():
            return head.decode_prompts(features, prompt, (h, w))

        def run_panoptic():
            return head.segment_panoptic(features)

        def run_tube(frames: int):
            return lambda: head.segment_tube(features.expand(frames, -1, -1, -1))

        from .video import tube_lengths

        masks, iou = run_prompt()
        classes, panoptic_masks = run_panoptic()
        encoder = nn.ModuleDict({"backbone": model.backbone, "neck": model.neck})
        return {
            "gmacs": {
                f"encoder_{h}x{w}": round(gmacs(lambda: model.image_encoder(image)), 2),
                "decoder_1_prompt": round(gmacs(run_prompt), 3),
                "panoptic_100_queries": round(gmacs(run_panoptic), 3),
                **{f"tube_{t}_frames": round(gmacs(run_tube(t)), 3) for t in tube_lengths()},
            },
            "fp16_mb": fp16_megabytes({"encoder": encoder, "decoder": head}),
            "shapes": {
                "image": [1, 3, h, w],
                "mask_features": list(features.shape),
                "prompts": [1, "N", 4],
                "prompt_mask_logits": list(masks.shape),
                "prompt_iou": list(iou.shape),
                "panoptic_class_logits": list(classes.shape),
                "panoptic_mask_logits": list(panoptic_masks.shape),
            },
        }


RAPSAM = register_family(RapSamFamily())
