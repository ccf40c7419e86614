"""RAP-SAM's three exported parts, as traceable modules with the exported names and shapes.

- encoder: image (1, 3, Hp, Wp) -> maskFeatures (1, 256, Hp/4, Wp/4)
- prompt decoder: maskFeatures, prompts (1, N, 4) xyxy in the resized frame, resizedSize (2,) = the
  resized, unpadded (h, w) -> maskLogits (1, N, Hp/4, Wp/4), iouScores (1, N, 1)
- panoptic head: maskFeatures -> classLogits (1, 100, 134), maskLogits (1, 100, Hp/4, Wp/4)
- tube head (video): frameFeatures (T, 256, Hp/4, Wp/4), the encoder's output of T frames -> classLogits
  (1, 100, 41), maskLogits (1, 100, T, Hp/4, Wp/4), queryEmbeddings (1, 100, 256); one function per tube
  length the official split gives (5, 4, 3, 2, 1 frames); matching and fusion in the app
  (`samexport.families.rapsam.video`, run by `pipelines.VideoPipeline`)

Every stage pools under a hard mask (sums over up to Hp/4 x Wp/4 pixels, 1e5 and more) and the
prompt adaptor's softmax spreads over all Hp/4 x Wp/4 pixels: float16 exports keep those ops in
float32 (`samexport.export.coreml_precision`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ...errors import InputError, UsageError
from ...modeling.rapsam import fixed_input
from ...parts import BenchFacts, Case, ExportShapes, Function, Interface, Part, PartForm, Tensor
from ...samples import validation_clip, validation_image, validation_prompts
from ..base import DECODER_BENCH, ENCODER_BENCH, EncoderForExport
from .video import tube_lengths as video_tube_lengths

PROMPT_OUTPUTS = ("maskLogits", "iouScores")
PANOPTIC_OUTPUTS = ("classLogits", "maskLogits")
TUBE_OUTPUTS = ("classLogits", "maskLogits", "queryEmbeddings")
PROMPT_SEED = 3


class RapSamEncoder(nn.Module):
    """backbone + neck as one module (the model keeps them apart for the official key layout)."""

    def __init__(self, backbone: nn.Module, neck: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.neck(self.backbone(image))


def encoder_for_export(model: nn.Module, pixel_std: Optional[Sequence[float]] = None) -> nn.Module:
    return EncoderForExport(RapSamEncoder(model.backbone, model.neck), pixel_std).eval()


class PromptDecoderForExport(nn.Module):
    """maskFeatures (1, 256, h, w), prompts (1, N, 4), resizedSize (2,) -> maskLogits, iouScores."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.head = copy.deepcopy(model.panoptic_head)

    def forward(
        self, features: torch.Tensor, prompts: torch.Tensor, resized_size: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.head.decode_prompts(features, prompts, (resized_size[0], resized_size[1]))


class TubeHeadForExport(nn.Module):
    """frameFeatures (T, 256, h, w) -> classLogits (1, 100, 41), maskLogits (1, 100, T, h, w),
    queryEmbeddings (1, 100, 256)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.head = copy.deepcopy(model.panoptic_head)

    def forward(self, features: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.head.segment_tube(features)


class PanopticHeadForExport(nn.Module):
    """maskFeatures (1, 256, h, w) -> classLogits (1, 100, 134), maskLogits (1, 100, h, w)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.head = copy.deepcopy(model.panoptic_head)

    def forward(self, features: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.head.segment_panoptic(features)


@dataclass
class RapSamReference:
    """The official model on the validation image at the export's input size."""

    image: np.ndarray
    tensor: torch.Tensor  # (1, 3, h, w) normalised input
    embeddings: torch.Tensor  # mask features (1, 256, h/4, w/4)
    resized_hw: Tuple[int, int]
    prompts: List[Tuple[str, torch.Tensor]]  # name, (1, N, 4) in the resized frame
    outputs: Dict[str, Tuple[np.ndarray, np.ndarray]]  # name -> (mask logits, IoU)
    panoptic: Optional[Tuple[np.ndarray, np.ndarray]]  # class logits, mask logits
    model: Optional[nn.Module] = None  # the official model, for the tube head's clip (computed when asked)
    _clip_features: Optional[torch.Tensor] = None

    def clip_features(self, frames: int) -> torch.Tensor:
        """(frames, 256, h/4, w/4): the mask features of `samples.validation_clip` at the export's input
        size."""
        have = 0 if self._clip_features is None else len(self._clip_features)
        if have < frames:
            more = []
            for image in validation_clip(frames)[have:]:
                with torch.no_grad():
                    more.append(
                        self.model.image_encoder(fixed_input(image, tuple(self.tensor.shape[-2:]))[0])
                    )
            self._clip_features = torch.cat(([self._clip_features] if have else []) + more)
        return self._clip_features[:frames]


def validation_cases(model, hw, prompt_counts) -> List[Tuple[str, torch.Tensor]]:
    """The validation prompts as RAP-SAM takes them (positive clicks and boxes, each its own query) where
    the decoder takes their prompt count, plus seeded clicks for every count they do not cover."""
    cases = []
    for name, kwargs in validation_prompts(*hw):
        labels = kwargs.get("labels", [])
        points = [p for p, label in zip(kwargs.get("points", []), labels) if label == 1]
        boxes = [kwargs["box"]] if "box" in kwargs else []
        if len(points) + len(boxes) in prompt_counts:
            name += " (positive clicks)" if 0 in labels else ""
            cases.append((name, model.prompt_tokens(hw, points, boxes)))
    covered = {int(p.shape[1]) for _, p in cases}
    rng = np.random.default_rng(PROMPT_SEED)
    for n in prompt_counts:
        if n not in covered:
            clicks = rng.uniform((0, 0), (hw[1], hw[0]), (n, 2)).tolist()
            cases.append((f"{n} seeded clicks", model.prompt_tokens(hw, points=clicks)))
    return cases


class RapSamParts:
    """`Family` methods for RAP-SAM's encoder, prompt decoder and panoptic head."""

    def exported_parts(self, options) -> Tuple[str, ...]:
        sets = self.class_sets(options)
        return (
            ("encoder", "decoder")
            + (("panoptic",) if "coco_panoptic" in sets else ())
            + (("tube",) if "youtube_vis" in sets else ())
        )

    def check_convert_options(self, spec, options) -> None:
        for flag, value, default in (
            ("--compress", options.compress, "none"),
            ("--decoder-shapes", options.decoder_shapes, "enumerated"),
            ("--batch", options.batch, (1,)),
        ):
            if value != default:
                raise UsageError(
                    f"{flag} is not available for {spec.name} yet (its prompts are independent queries: "
                    f"give --points for the prompt counts per call); drop {flag}"
                )

    def export_shapes(self, options) -> ExportShapes:
        size = tuple(options.input_size or self.default_input_size)
        return ExportShapes(tuple(sorted(set(options.points))), (1,), size)

    def export_contract(self, shapes: ExportShapes) -> Dict:
        return self.input_contract(shapes.input_size)

    def prompt_manifest(self, shapes: ExportShapes) -> Dict:
        return {
            "prompt_counts": list(shapes.token_counts),
            "input_size": list(shapes.input_size),
            "prompt_layout": "(1, N, 4) xyxy boxes in the resized frame, a click as a 6x6 box; N independent "
            "queries per call (dynamic targets: any N, others: the declared N)",
        }

    def reference(self, model, shapes: ExportShapes) -> RapSamReference:
        image = validation_image()
        tensor, resized_hw = fixed_input(image, shapes.input_size)
        with torch.no_grad():
            features = model.image_encoder(tensor)
        prompts = validation_cases(model, image.shape[:2], shapes.token_counts)
        outputs = {}
        for name, prompt in prompts:
            logits, iou = model.decode(features, prompt, resized_hw)
            outputs[name] = (logits.numpy(), iou.numpy())
        panoptic = tuple(t.numpy() for t in model.panoptic(features)) if model.has_classifier else None
        return RapSamReference(image, tensor, features, resized_hw, prompts, outputs, panoptic, model)

    def part_interfaces(self, shapes: ExportShapes, form: PartForm) -> Dict[str, Interface]:
        contract = self.input_contract(shapes.input_size)
        h, w = shapes.input_size
        features_shape = (1, 256, h // 4, w // 4)
        image_text = f"RGB {w}x{h}. {contract['letterbox']}. Normalization is inside the model."
        image = self.encoder_input(shapes.input_size, form.image_input, image_text, contract)
        features = Tensor(
            "maskFeatures",
            features_shape,
            f"float32 {features_shape}: mask features from the encoder (stride 4)",
        )
        counts = list(shapes.token_counts)
        default = 1 if 1 in counts else counts[0]
        prompt_counts = [default] + [n for n in counts if n != default]
        prompts = Tensor(
            "prompts",
            (1, "N", 4),
            f"float32 (1, N, 4), N in {counts}: {contract['prompt_layout']}",
            fill="boxes",
        )
        resized = Tensor(
            "resizedSize",
            (2,),
            "float32 (2,): the resized, unpadded image (h, w) the prompts are normalised by",
            fill="size",
        )
        encoder = Interface(
            "encoder",
            "image encoder",
            (image,),
            (features,),
            (Function("main", {"image": (1, 3, h, w)}),),
            notes={"deformable_convolution": "modulated deformable convolution, one per neck level"},
            keeps_float32_pooling=True,
            reparameterized=True,
            bench=ENCODER_BENCH,
        )
        decoder = Interface(
            "decoder",
            "prompt decoder",
            (features, prompts, resized),
            (
                Tensor(
                    "maskLogits",
                    (1, "N", h // 4, w // 4),
                    f"float32 (1, N, {h // 4}, {w // 4}) mask logits; {contract['mask_upscaling']}",
                    threshold=0.0,
                ),
                Tensor(
                    "iouScores",
                    (1, "N", 1),
                    "float32 (1, N, 1) raw predicted IoU per prompt",
                    floor="raw_scores",
                ),
            ),
            tuple(
                Function(
                    f"prompts_{n}",
                    {"maskFeatures": features_shape, "prompts": (1, n, 4), "resizedSize": (2,)},
                )
                for n in prompt_counts
            ),
            dynamic_axes={
                "prompts": {1: "numPrompts"},
                "maskLogits": {1: "numPrompts"},
                "iouScores": {1: "numPrompts"},
            }
            if form.dynamic
            else {},
            upstream={"maskFeatures": "encoder"},
            keeps_float32_pooling=True,
            bench=DECODER_BENCH,
        )
        panoptic = Interface(
            "panoptic",
            "panoptic head",
            (features,),
            (
                Tensor(
                    "classLogits",
                    (1, 100, 134),
                    "float32 (1, 100, 134) raw class logits (softmax over the last axis; 133 = no object)",
                ),
                Tensor(
                    "maskLogits",
                    (1, 100, h // 4, w // 4),
                    f"float32 (1, 100, {h // 4}, {w // 4}) mask logits; fusion: {contract['panoptic']}",
                ),
            ),
            (Function("main", {"maskFeatures": features_shape}),),
            upstream={"maskFeatures": "encoder"},
            keeps_float32_pooling=True,
            bench=BenchFacts(runs=10, column="{title} panoptic head"),
        )
        lengths = video_tube_lengths()
        frame_features = Tensor(
            "frameFeatures",
            ("T", 256, h // 4, w // 4),
            f"float32 (T, 256, {h // 4}, {w // 4}), T in {list(lengths)}: the encoder's maskFeatures of the "
            "tube's T frames, in frame order",
        )
        tube = Interface(
            "tube",
            "tube head (video)",
            (frame_features,),
            (
                Tensor(
                    "classLogits",
                    (1, 100, 41),
                    "float32 (1, 100, 41) raw class logits of the tube's queries (YouTube-VIS 2019; 40 = no "
                    "object); averaged over the matched tubes in the app",
                    floor="pooled_over_frames",
                ),
                Tensor(
                    "maskLogits",
                    (1, 100, "T", h // 4, w // 4),
                    f"float32 (1, 100, T, {h // 4}, {w // 4}) mask logits of each query in each frame; "
                    f"{contract['mask_upscaling']}",
                    floor="pooled_over_frames",
                ),
                Tensor(
                    "queryEmbeddings",
                    (1, 100, 256),
                    "float32 (1, 100, 256) what the app matches queries across tubes by (cosine, Hungarian)",
                    floor="pooled_over_frames",
                ),
            ),
            tuple(Function(f"frames_{n}", {"frameFeatures": (n, 256, h // 4, w // 4)}) for n in lengths),
            dynamic_axes={"frameFeatures": {0: "frames"}, "maskLogits": {2: "frames"}}
            if form.dynamic
            else {},
            upstream={"frameFeatures": "encoder"},
            notes={
                "video": "samexport.families.rapsam.pipelines.VideoPipeline / SAMHarnessKit VideoTracks: "
                "tube split (5 frames, 3 for clips of "
                "at most 15), query matching, class averaging, per-frame instances with ids",
                "video_input": "the official video pipeline resizes frames to fit 1280x736 (YouTube-VIS "
                "test Resize), not 1333x800: export with --input-size 736x992 for 4:3 landscape clips",
            },
            keeps_float32_pooling=True,
            bench=BenchFacts(runs=5, sweep="frames", dim="T"),
        )
        return {"encoder": encoder, "decoder": decoder, "panoptic": panoptic, "tube": tube}

    def part_modules(self, model, form: PartForm) -> Dict[str, Callable[[], nn.Module]]:
        """part -> () -> its module over `model`, taking any input size (the official pipeline's or an
        export's): what every target lowers and what a PyTorch session runs."""
        pixel_std = self.pixel_std_255 if form.image_input else None
        return {
            "encoder": lambda: encoder_for_export(model, pixel_std),
            "decoder": lambda: PromptDecoderForExport(model).eval(),
            "panoptic": lambda: PanopticHeadForExport(model).eval(),
            "tube": lambda: TubeHeadForExport(model).eval(),
        }

    def unavailable_parts(self, model) -> Dict[str, str]:
        """part -> why this built model cannot run it (the heads hold class embeddings it may lack)."""
        missing = {}
        for part, require in (
            ("panoptic", model.require_classifier),
            ("tube", model.require_video_classifier),
        ):
            try:
                require()
            except InputError as e:
                missing[part] = str(e)
        return missing

    def export_parts(self, model, fused, shapes: ExportShapes, form: PartForm, reference) -> Dict[str, Part]:
        interfaces = self.part_interfaces(shapes, form)
        h, w = shapes.input_size
        features_shape = (1, 256, h // 4, w // 4)

        def encoder_cases(upstream=None) -> List[Case]:
            if form.image_input:
                from ..sam_style import canvas_features

                feed, expected = canvas_features(model, self.app_canvas(reference.image, shapes.input_size))
            else:
                feed, expected = reference.tensor.numpy(), reference.embeddings.numpy()
            return [("validation image", {"image": feed}, {"maskFeatures": expected})]

        def decoder_cases(upstream=None) -> List[Case]:
            features = reference.embeddings.numpy()
            return [
                (
                    name,
                    {
                        "maskFeatures": np.asarray(features, dtype=np.float32),
                        "prompts": prompt.numpy().astype(np.float32),
                        "resizedSize": np.asarray(reference.resized_hw, dtype=np.float32),
                    },
                    dict(zip(PROMPT_OUTPUTS, reference.outputs[name])),
                )
                for name, prompt in reference.prompts
            ]

        def panoptic_cases(upstream=None) -> List[Case]:
            if reference.panoptic is None:
                raise UsageError("the panoptic head needs the class embeddings: pass --classifier")
            features = reference.embeddings.numpy()
            return [
                (
                    "object queries",
                    {"maskFeatures": features},
                    dict(zip(PANOPTIC_OUTPUTS, reference.panoptic)),
                )
            ]

        def tube_cases(upstream=None) -> List[Case]:
            cases = []
            for function in interfaces["tube"].functions:
                frames = function.shapes["frameFeatures"][0]
                features = reference.clip_features(frames)
                expected = dict(zip(TUBE_OUTPUTS, (t.numpy() for t in model.tube(features))))
                cases.append(
                    (
                        f"{frames} frame{'s' if frames > 1 else ''}",
                        {"frameFeatures": features.numpy()},
                        expected,
                    )
                )
            return cases

        modules = self.part_modules(fused, form)
        decoder_example = (
            torch.zeros(features_shape),
            torch.zeros(1, interfaces["decoder"].default.shapes["prompts"][1], 4),
            torch.tensor([h, w]).float(),
        )
        return {
            "encoder": Part(
                interfaces["encoder"],
                module=modules["encoder"],
                example=lambda: (torch.zeros(1, 3, h, w),),
                cases=encoder_cases,
            ),
            "decoder": Part(
                interfaces["decoder"],
                module=modules["decoder"],
                example=lambda: decoder_example,
                cases=decoder_cases,
                recompute=recompute_under(model, reference, "decoder"),
            ),
            "panoptic": Part(
                interfaces["panoptic"],
                module=modules["panoptic"],
                example=lambda: (torch.zeros(features_shape),),
                cases=panoptic_cases,
                recompute=recompute_under(model, reference, "panoptic"),
            ),
            "tube": Part(
                interfaces["tube"],
                module=modules["tube"],
                example=lambda: (torch.zeros(interfaces["tube"].default.shapes["frameFeatures"]),),
                cases=tube_cases,
                recompute=recompute_under(model, reference, "tube"),
            ),
        }


def recompute_under(model, reference: RapSamReference, part: str):
    """parts.Recompute for a head: PyTorch's outputs of one case under the export's own hard masks, and
    PyTorch's logits at each of them."""
    from ...modeling.rapsam_head import GivenHardMasks

    prompts = dict(reference.prompts)

    def recompute(name: str, masks) -> Tuple[Dict[str, np.ndarray], List[np.ndarray]]:
        with torch.no_grad(), GivenHardMasks(masks) as given:
            if part == "decoder":
                outputs = model.decode(reference.embeddings, prompts[name], reference.resized_hw)
            elif part == "tube":
                outputs = model.tube(reference.clip_features(int(name.split()[0])))
            else:
                outputs = model.panoptic(reference.embeddings)
        names = {"decoder": PROMPT_OUTPUTS, "tube": TUBE_OUTPUTS}.get(part, PANOPTIC_OUTPUTS)
        return dict(zip(names, (t.numpy() for t in outputs))), [t.numpy() for t in given.logits]

    return recompute
