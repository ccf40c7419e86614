"""The EdgeTAM family: SAM 2's tracker on a RepViT-M1 trunk. Its exports are the tracker's stateless parts
(modules.py); the tracker (tracker.py) carries the memory bank between them, on PyTorch or any export.

Validation is teacher-forced: the official model tracks a validation clip (the validation image shifted per
frame, an object clicked and one boxed on frame 0), every part call of that run is recorded, and each
exported part is fed the recorded inputs of its calls and held to the recorded outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from ...errors import UsageError
from ...modeling import transforms
from ...modeling.edgetam import EdgeTam
from ...parts import BenchFacts, Case, ExportShapes, Function, Interface, Part, PartForm, Tensor
from ...runtime import Runner, Session, TorchRunner
from ...samples import validation_clip
from ..base import ENCODER_BENCH, Family, fp16_megabytes
from ..registry import register_family
from .modules import PART_MODULES, pack_points, part_module
from .tracker import TRACKER_PARTS, TrackerConfig, VideoTracker

DECODER_OUTPUTS = ("lowResMasks", "iouScores", "objectPointers", "objectScore")
VALIDATION_FRAMES = 4
CASES_PER_PART = 3
# attention sums over the 4,096 memory tokens (the perceiver's global latents) and the 4,096 image tokens
# (memory attention) stay float32 in float16 files: float16 sums measured 30.4 dB with another weight fill
FLOAT32_SUMS_OVER = 4096


@dataclass
class RecordingRunner(Runner):
    """A PyTorch runner that keeps every call's feeds and outputs (the reference run's teacher values)."""

    inner: TorchRunner
    calls: List[Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]] = field(default_factory=list)
    description: str = "PyTorch (recorded)"
    runtime: str = "numpy"

    def run(self, feeds):
        outputs, extras = self.inner.run(feeds)
        self.calls.append(({k: np.array(v, np.float32) for k, v in feeds.items()}, outputs))
        return outputs, extras


@dataclass
class EdgeTamReference:
    """Every part call of the official model tracking the validation clip."""

    calls: Dict[str, List[Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]]]


class EdgeTamFamily(Family):
    name = "edgetam"
    model_class = EdgeTam
    default_input_size = (1024, 1024)
    bench_parts = TRACKER_PARTS
    # on the 0..255 scale a Core ML image input delivers
    pixel_mean_255 = tuple(255 * m for m in transforms.IMAGENET_MEAN_01)
    pixel_std_255 = tuple(255 * s for s in transforms.IMAGENET_STD_01)

    def build(self, image_encoder: nn.Module) -> nn.Module:
        return EdgeTam(image_encoder)

    # -- convert -----------------------------------------------------------------------------------------
    def exported_parts(self, options) -> Tuple[str, ...]:
        return TRACKER_PARTS

    def check_convert_options(self, spec, options) -> None:
        for flag, value, default in (
            ("--compress", options.compress, "none"),
            ("--decoder-shapes", options.decoder_shapes, "enumerated"),
            ("--batch", options.batch, (1,)),
            ("--input-size", options.input_size, None),
        ):
            if value != default:
                raise UsageError(
                    f"{flag} is not available for {spec.name} (a 1024x1024 tracker); drop {flag}"
                )

    def export_shapes(self, options) -> ExportShapes:
        # a prompt of p points (box corners count 2) is p + 1 tokens with the padding token
        return ExportShapes(tuple(sorted({p + 1 for p in options.points})), (1,), (1024, 1024))

    def tracker_config(self, shapes: Optional[ExportShapes] = None) -> TrackerConfig:
        return TrackerConfig()

    def export_contract(self, shapes: ExportShapes) -> Dict:
        config = self.tracker_config(shapes)
        return {
            "family": self.name,
            "model_input_size": [1024, 1024],
            "resize": "each frame resized to 1024x1024, aspect ratio not kept (Pillow bicubic on the "
            "uint8 frame), /255, normalised with mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)",
            "coordinate_frame": "(x, y) / (video width, height) * 1024",
            "point_labels": {
                "1": "positive",
                "0": "negative",
                "2": "box top-left",
                "3": "box bottom-right",
                "-1": "padding (one padding token ends every prompt)",
            },
            "mask_threshold": 0.0,
            "memory_bank": {
                "memory_slots": config.memory_slots,
                "cond_slots": config.cond_slots,
                "pointer_slots": config.pointer_slots,
                "temporal_rows": "row 6 for conditioning frames, row t - 1 for the memory t frames back",
                "memory_storage": "bfloat16 values (each memory rounded as the official predictor stores it)",
                "empty_slot": "zeros with memoryValid / pointerValid 0",
            },
            "tracker": "samexport.families.edgetam.tracker.VideoTracker (the official SAM2VideoPredictor's "
            "semantics: memory selection, multimask rule, object-score gating, hole filling of 8 pixels)",
        }

    def prompt_manifest(self, shapes: ExportShapes) -> Dict:
        return {
            "token_counts": list(shapes.token_counts),
            "prompt_layout": "pointCoords (1, N, 2), pointLabels (1, N): box corners, then clicks, then "
            "one padding token (0, 0) labelled -1",
        }

    def reference(self, model, shapes: ExportShapes) -> EdgeTamReference:
        form = PartForm(False, False, False)
        interfaces = self.part_interfaces(shapes, form)
        recorders = {
            part: RecordingRunner(
                TorchRunner(module(), interfaces[part].output_names, interfaces[part].input_names)
            )
            for part, module in self.part_modules(model, form).items()
        }
        session = Session("torch", "edgetam", interfaces, recorders)
        tracker = VideoTracker(session, self.tracker_config(shapes))
        state = tracker.init_state(frames=validation_clip(VALIDATION_FRAMES))
        h, w = state.video_height, state.video_width
        tracker.add_new_points_or_box(state, 0, 1, points=[[w * 0.3, h * 0.4]], labels=[1])
        tracker.add_new_points_or_box(state, 0, 2, box=[w * 0.6, h * 0.15, w * 0.9, h * 0.55])
        for _ in tracker.propagate_in_video(state):
            pass
        return EdgeTamReference({p: r.calls for p, r in recorders.items()})

    def part_interfaces(self, shapes: ExportShapes, form: PartForm) -> Dict[str, Interface]:
        config = self.tracker_config(shapes)
        s, p = config.memory_slots, config.pointer_slots
        vision = Tensor("visionFeatures", (1, 256, 64, 64), "float32 (1, 256, 64, 64) stride-16 features")
        hr0 = Tensor("highResFeatures0", (1, 32, 256, 256), "float32 (1, 32, 256, 256) stride-4 features")
        hr1 = Tensor("highResFeatures1", (1, 64, 128, 128), "float32 (1, 64, 128, 128) stride-8 features")
        pix = Tensor(
            "pixFeatures",
            (1, 256, 64, 64),
            "float32 (1, 256, 64, 64): memory_attention's output, "
            "or visionFeatures on a frame without memory (noMemory 1)",
        )
        decoder_outputs = (
            Tensor(
                "lowResMasks",
                (1, 4, 256, 256),
                "float32 (1, 4, 256, 256) mask logits of the 4 tokens (-1024 where the object score is <= 0)",
                threshold=0.0,
            ),
            Tensor("iouScores", (1, 4), "float32 (1, 4) predicted IoU of each token (sigmoid)"),
            Tensor("objectPointers", (1, 4, 256), "float32 (1, 4, 256) object pointer of each token"),
            Tensor("objectScore", (1, 1), "float32 (1, 1) object-score logit (> 0: present)", threshold=0.0),
        )
        counts = list(shapes.token_counts)
        default = 2 if 2 in counts else counts[0]
        token_counts = [default] + [n for n in counts if n != default]
        if form.image_input:
            image = Tensor(
                "image",
                (1, 3, 1024, 1024),
                "RGB, the frame resized to 1024x1024 (aspect ratio not kept). "
                "Normalization is inside the model.",
                image=True,
                pixel_bias=tuple(-m for m in self.pixel_mean_255),
                fill="pixels",
            )
        else:
            image = Tensor("image", (1, 3, 1024, 1024), "float32 (1, 3, 1024, 1024) normalised frame")
        if form.packed_prompts:
            prompt = (
                Tensor(
                    "points",
                    (1, "N", 3),
                    "float32 (1, N, 3) (x, y, label) tokens in the 1024 frame, "
                    "the last one padding (0, 0, -1)",
                    fill="points",
                ),
            )
        else:
            prompt = (
                Tensor("pointCoords", (1, "N", 2), "float32 (1, N, 2) in the 1024 frame", fill="coords"),
                Tensor("pointLabels", (1, "N"), "float32 (1, N) labels, the last token -1", fill="ones"),
            )
        prompt_shapes = (
            (lambda n: {"points": (1, n, 3)})
            if form.packed_prompts
            else (lambda n: {"pointCoords": (1, n, 2), "pointLabels": (1, n)})
        )
        prompt_inputs = (
            pix,
            hr0,
            hr1,
            *prompt,
            Tensor(
                "maskInput",
                (1, 1, 256, 256),
                "float32 (1, 1, 256, 256) previous mask logits (+-32)",
                fill="zeros",
            ),
            Tensor("hasMaskInput", (1,), "float32 (1,) 1 to use maskInput", fill="zeros"),
            Tensor(
                "noMemory", (1,), "float32 (1,) 1 on a frame without memory (adds no_mem_embed)", fill="ones"
            ),
        )
        fixed = {
            "pixFeatures": (1, 256, 64, 64),
            "highResFeatures0": (1, 32, 256, 256),
            "highResFeatures1": (1, 64, 128, 128),
        }
        memory_inputs = (
            vision,
            Tensor("memory", (s, 512, 64), f"float32 ({s}, 512, 64) memory slots (bfloat16 values)"),
            Tensor("memoryTemporal", (s, 7), f"float32 ({s}, 7) one-hot temporal row per slot", fill="zeros"),
            Tensor("memoryValid", (s,), f"float32 ({s},) 1 for a filled slot", fill="ones"),
            Tensor("objectPointers", (p, 256), f"float32 ({p}, 256) object pointers"),
            Tensor("pointerValid", (p,), f"float32 ({p},) 1 for a filled pointer slot", fill="ones"),
        )
        return {
            "encoder": Interface(
                "encoder",
                "image encoder",
                (image,),
                (vision, hr0, hr1),
                (Function("main", {"image": (1, 3, 1024, 1024)}),),
                reparameterized=True,
                bench=ENCODER_BENCH,
            ),
            "prompt_decoder": Interface(
                "prompt_decoder",
                "prompt decoder",
                prompt_inputs,
                decoder_outputs,
                tuple(
                    Function(
                        f"points_{n}",
                        {
                            **fixed,
                            **prompt_shapes(n),
                            "maskInput": (1, 1, 256, 256),
                            "hasMaskInput": (1,),
                            "noMemory": (1,),
                        },
                    )
                    for n in token_counts
                ),
                dynamic_axes={name: {1: "numPoints"} for name in prompt_shapes(1)} if form.dynamic else {},
                upstream={"highResFeatures0": "encoder", "highResFeatures1": "encoder"},
                bench=BenchFacts(runs=10, sweep="points", dim="N"),
            ),
            "track_decoder": Interface(
                "track_decoder",
                "track decoder",
                (pix, hr0, hr1),
                decoder_outputs,
                (Function("main", fixed),),
                upstream={
                    "pixFeatures": "memory_attention",
                    "highResFeatures0": "encoder",
                    "highResFeatures1": "encoder",
                },
                bench=BenchFacts(runs=10),
            ),
            "memory_attention": Interface(
                "memory_attention",
                "memory attention",
                memory_inputs,
                (
                    Tensor(
                        "pixFeatures",
                        (1, 256, 64, 64),
                        "float32 (1, 256, 64, 64) memory-conditioned features",
                    ),
                ),
                (Function("main", {t.name: t.shape for t in memory_inputs}),),
                upstream={"visionFeatures": "encoder"},
                notes={"memory_slots": str(s), "pointer_slots": str(p)},
                float32_sums_over=FLOAT32_SUMS_OVER,
                bench=BenchFacts(runs=5),
            ),
            "memory_encoder": Interface(
                "memory_encoder",
                "memory encoder",
                (
                    vision,
                    Tensor(
                        "maskLogits", (1, 1, 256, 256), "float32 (1, 1, 256, 256) the chosen mask's logits"
                    ),
                    Tensor("binarize", (1,), "float32 (1,) 1 for a prompted frame's mask", fill="ones"),
                ),
                (Tensor("memory", (1, 512, 64), "float32 (1, 512, 64) the frame's memory"),),
                (
                    Function(
                        "main",
                        {
                            "visionFeatures": (1, 256, 64, 64),
                            "maskLogits": (1, 1, 256, 256),
                            "binarize": (1,),
                        },
                    ),
                ),
                upstream={"visionFeatures": "encoder"},
                float32_sums_over=FLOAT32_SUMS_OVER,
                bench=BenchFacts(runs=5),
            ),
        }

    def part_modules(self, model, form: PartForm) -> Dict[str, Callable[[], nn.Module]]:
        forms = {
            "encoder": {"pixel_std": self.pixel_std_255 if form.image_input else None},
            "prompt_decoder": {"packed": form.packed_prompts},
        }
        return {
            part: (lambda part=part: part_module(model, part, **forms.get(part, {})))
            for part in TRACKER_PARTS
        }

    def form_feeds(self, feeds: Dict[str, np.ndarray], form: PartForm) -> Dict[str, np.ndarray]:
        """A reference call's feeds (normalised image, coords and labels) as `form`'s parts take them."""
        feeds = dict(feeds)
        if form.image_input and "image" in feeds:
            mean = np.array(transforms.IMAGENET_MEAN_01, np.float32).reshape(1, 3, 1, 1)
            std = np.array(transforms.IMAGENET_STD_01, np.float32).reshape(1, 3, 1, 1)
            # the 8-bit frame the normalised tensor came from
            feeds["image"] = np.round((feeds["image"] * std + mean) * 255).astype(np.float32)
        if form.packed_prompts and "pointCoords" in feeds:
            feeds["points"] = pack_points(feeds.pop("pointCoords"), feeds.pop("pointLabels"))
        return feeds

    def segmenter(self, mode: str) -> Optional[Callable]:
        """Video: the prompted objects tracked through a clip (`segment.segment_video`); no image mode of its
        own (the tracker's first frame is SAM 2's image predictor)."""
        if mode == "video":
            from .segment import segment_video

            return segment_video
        return None

    tracks_prompted_objects = True

    def video_predictor(self, session: Session, config: Optional[TrackerConfig] = None) -> VideoTracker:
        return VideoTracker(session, config or self.tracker_config(session.shapes))

    def export_parts(self, model, fused, shapes: ExportShapes, form: PartForm, reference) -> Dict[str, Part]:
        interfaces = self.part_interfaces(shapes, form)
        modules = self.part_modules(fused, form)

        def cases_of(part: str, select=None) -> Callable[[Optional[Dict]], List[Case]]:
            def cases(upstream=None) -> List[Case]:
                calls = reference.calls[part]
                chosen = [c for c in calls if select is None or select(c[0])][:CASES_PER_PART]
                return [
                    (f"validation clip call {i}", self.form_feeds(feeds, form), outputs)
                    for i, (feeds, outputs) in enumerate(chosen)
                ]

            return cases

        def example(part: str, function: Optional[Function] = None):
            interface = interfaces[part]
            shapes_of = (function or interface.default).shapes
            return lambda: tuple(torch.zeros(shapes_of[n]) for n in interface.input_names)

        def decoder_example():
            interface = interfaces["prompt_decoder"]
            values = {n: torch.zeros(interface.default.shapes[n]) for n in interface.input_names}
            if form.packed_prompts:
                values["points"][..., 2] = -1.0
            else:
                values["pointLabels"] -= 1.0
            return tuple(values.values())

        return {
            "encoder": Part(
                interfaces["encoder"], modules["encoder"], example("encoder"), cases_of("encoder")
            ),
            "prompt_decoder": Part(
                interfaces["prompt_decoder"],
                modules["prompt_decoder"],
                decoder_example,
                cases_of("prompt_decoder"),
            ),
            "track_decoder": Part(
                interfaces["track_decoder"],
                modules["track_decoder"],
                example("track_decoder"),
                cases_of("track_decoder"),
            ),
            "memory_attention": Part(
                interfaces["memory_attention"],
                modules["memory_attention"],
                example("memory_attention"),
                cases_of("memory_attention"),
            ),
            "memory_encoder": Part(
                interfaces["memory_encoder"],
                modules["memory_encoder"],
                example("memory_encoder"),
                cases_of("memory_encoder"),
            ),
        }

    def param_counts(self, model: nn.Module) -> Dict[str, int]:
        encoder = sum(p.numel() for p in model.image_encoder.parameters())
        total = sum(p.numel() for p in model.parameters())
        return {"encoder": encoder, "decoder": total - encoder, "total": total}

    def model_facts(self, model: nn.Module, gmacs) -> Dict:
        config = self.tracker_config()
        s, p = config.memory_slots, config.pointer_slots
        image = torch.empty(1, 3, 1024, 1024)
        vision = torch.empty(1, 256, 64, 64)
        hr0, hr1 = torch.empty(1, 32, 256, 256), torch.empty(1, 64, 128, 128)
        attention = PART_MODULES["memory_attention"](model)
        encoder_mem = PART_MODULES["memory_encoder"](model)
        track = PART_MODULES["track_decoder"](model)
        return {
            "gmacs": {
                "encoder_1024x1024": round(gmacs(lambda: model.encode_image(image)), 2),
                "track_decoder": round(gmacs(lambda: track(vision, hr0, hr1)), 3),
                f"memory_attention_{s}_slots": round(
                    gmacs(
                        lambda: attention(
                            vision,
                            torch.empty(s, 512, 64),
                            torch.empty(s, 7),
                            torch.empty(s),
                            torch.empty(p, 256),
                            torch.empty(p),
                        )
                    ),
                    2,
                ),
                "memory_encoder": round(
                    gmacs(lambda: encoder_mem(vision, torch.empty(1, 1, 256, 256), torch.empty(1))), 2
                ),
            },
            "fp16_mb": fp16_megabytes(
                {
                    "encoder": model.image_encoder,
                    "tracker": nn.ModuleDict(
                        {
                            k: getattr(model, k)
                            for k in (
                                "sam_prompt_encoder",
                                "sam_mask_decoder",
                                "memory_attention",
                                "memory_encoder",
                                "spatial_perceiver",
                                "obj_ptr_proj",
                            )
                        }
                    ),
                }
            ),
            "shapes": {"image": [1, 3, 1024, 1024], "memory": [s, 512, 64], "pointers": [p, 256]},
        }


EDGETAM = register_family(EdgeTamFamily())
