"""What a model family is: the type that owns a decoder/prompt convention.

A family (SAM-style, EfficientSAM-style, ...) decides everything that differs between families:
the model class, pixel statistics and preprocessing, the input contract written into manifests
and Core ML metadata, the prompt-token rule, the traceable export modules and the exported
decoder's signature. Code elsewhere asks the family; it never tests a family's name.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..parts import ExportShapes, Interface, Part, PartForm, Tensor
from ..prompt_rules import PromptRule

EMBEDDINGS_SHAPE = (1, 256, 64, 64)
MASK_INPUT_SHAPE = (1, 1, 256, 256)
DECODER_OUTPUTS = ("lowResMasks", "iouScores")
SPLIT_POINTS_NOTE = "pointCoords (B, N, 2) and pointLabels (B, N) float32"


@dataclass(frozen=True)
class DecoderSignature:
    """The exported decoder's inputs and outputs, for every target.

    imageEmbeddings (1, 256, 64, 64) and B prompt sets of N tokens each, either packed as `points`
    (B, N, 3) = (x, y, label) (Core ML: one input may carry enumerated shapes below iOS 18) or as
    `pointCoords` (B, N, 2) and `pointLabels` (B, N) (ONNX); with a mask prompt also `maskInput`
    (1, 1, 256, 256) and `hasMaskInput` (1,), shared by the B sets. Outputs: lowResMasks
    (B, 4, 256, 256), iouScores (B, 4). ONNX: B is dynamic; Core ML: B is one of `batch_sizes`
    (enumerated with the token counts; the default shape is B = 1 with the first token count).
    """

    token_counts: Tuple[int, ...]
    mask_prompt: bool
    onnx_dynamic_tokens: bool
    batch_sizes: Tuple[int, ...] = (1,)
    # tokens of a single click (the shape apps call most; Core ML preallocates for the default shape)
    single_click_tokens: int = 0

    outputs: ClassVar[Tuple[str, ...]] = DECODER_OUTPUTS

    @property
    def default_tokens(self) -> int:
        """The single-click token count where the decoder takes it, else the smallest."""
        return (
            self.single_click_tokens
            if self.single_click_tokens in self.token_counts
            else self.token_counts[0]
        )

    def shapes(self) -> List[Tuple[int, int]]:
        """Every (B, N) the Core ML decoder takes, the default (one single-click prompt set) first."""
        default = (1, self.default_tokens)
        return [default] + [(b, n) for b in self.batch_sizes for n in self.token_counts if (b, n) != default]

    @staticmethod
    def function_name(batch: int, tokens: int) -> str:
        """A multifunction decoder's function for B prompt sets of N tokens."""
        return f"points_{tokens}" if batch == 1 else f"points_{tokens}_batch_{batch}"

    def example(self, packed: bool, tokens: Optional[int] = None, batch: int = 1) -> Tuple[torch.Tensor, ...]:
        """Example inputs for tracing and export, in `input_names` order."""
        n = tokens or self.default_tokens
        prompt = (torch.zeros(batch, n, 3),) if packed else (torch.zeros(batch, n, 2), torch.ones(batch, n))
        mask = (torch.zeros(MASK_INPUT_SHAPE), torch.zeros(1)) if self.mask_prompt else ()
        return (torch.zeros(EMBEDDINGS_SHAPE),) + prompt + mask

    def onnx_dynamic_axes(self) -> Dict[str, Dict[int, str]]:
        tokens = {1: "numPoints"} if self.onnx_dynamic_tokens else {}
        return {
            "pointCoords": {0: "numPromptSets", **tokens},
            "pointLabels": {0: "numPromptSets", **tokens},
            "lowResMasks": {0: "numPromptSets"},
            "iouScores": {0: "numPromptSets"},
        }

    def onnx_description(self) -> Dict[str, str]:
        return {
            "point_inputs": SPLIT_POINTS_NOTE,
            "num_points": "dynamic" if self.onnx_dynamic_tokens else f"fixed {self.default_tokens} tokens",
            "prompt_sets": "dynamic B: one call decodes B prompt sets of N tokens against one embedding",
        }

    def feeds(
        self,
        embeddings: np.ndarray,
        coords: torch.Tensor,
        labels: torch.Tensor,
        mask: Optional[torch.Tensor],
        packed: bool,
    ) -> Dict[str, np.ndarray]:
        """An exported decoder's inputs for tokens in the model frame (and an optional mask prompt)."""
        coords_np = coords.numpy().astype(np.float32)
        labels_np = labels.numpy().astype(np.float32)
        feeds = {"imageEmbeddings": np.asarray(embeddings, dtype=np.float32)}
        if packed:
            feeds["points"] = np.concatenate([coords_np, labels_np[..., None]], -1)
        else:
            feeds.update(pointCoords=coords_np, pointLabels=labels_np)
        if self.mask_prompt:
            feeds["maskInput"] = (mask.numpy() if mask is not None else np.zeros(MASK_INPUT_SHAPE)).astype(
                np.float32
            )
            feeds["hasMaskInput"] = np.array([1.0 if mask is not None else 0.0], dtype=np.float32)
        return feeds


def first_rgb_conv(encoder: nn.Module) -> nn.Conv2d:
    """The encoder's first convolution (every supported encoder starts with one on RGB)."""
    for module in encoder.modules():
        if isinstance(module, nn.Conv2d):
            if module.in_channels != 3:
                break
            return module
    raise ValueError("encoder does not start with a 3-channel convolution")


class EncoderForExport(nn.Module):
    """(1, 3, 1024, 1024) -> imageEmbeddings (1, 256, 64, 64).

    With `pixel_std` given, the input is `pixel - mean` on the 0..255 scale (what a Core ML
    ImageType with bias = -mean produces) and 1/std is folded into the first convolution's
    weights, per input channel. The mean is not folded into the bias: the first conv pads
    with zeros, which must keep meaning "the mean colour".
    """

    def __init__(self, image_encoder: nn.Module, pixel_std: Sequence[float] | None = None) -> None:
        super().__init__()
        self.image_encoder = copy.deepcopy(image_encoder)
        if pixel_std is not None:
            conv = first_rgb_conv(self.image_encoder)
            with torch.no_grad():
                std = torch.tensor(pixel_std, dtype=torch.float64).view(1, 3, 1, 1)
                conv.weight.copy_(conv.weight.double() / std)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(image)


class DecoderForExport(nn.Module):
    """Prompt encoder + mask decoder with the dense image PE stored as a constant; a family's
    subclass defines `forward(image_embeddings, *prompt)` in its signature's input order."""

    def __init__(self, model: nn.Module, packed_points: bool = False) -> None:
        super().__init__()
        self.prompt_encoder = copy.deepcopy(model.prompt_encoder)
        self.mask_decoder = copy.deepcopy(model.mask_decoder)
        self.register_buffer("dense_pe", model.prompt_encoder.get_dense_pe().detach().clone())
        self.packed_points = packed_points

    def sparse_and_rest(self, prompt: Tuple[torch.Tensor, ...]) -> Tuple[torch.Tensor, list]:
        """Sparse prompt tokens from (points (B, N, 3), ...) or (coords, labels, ...); the other inputs."""
        if self.packed_points:
            points, *rest = prompt
            coords, labels = points[..., :2], points[..., 2]
        else:
            coords, labels, *rest = prompt
        return self.prompt_encoder.embed_points(coords, labels), rest


class Family(ABC):
    """A decoder/prompt convention shared by several encoders (see the module docstring)."""

    name: ClassVar[str]  # written into manifests, metadata and bench rows
    decoder_title: ClassVar[str]  # the decoder's column in the paper table
    model_class: ClassVar[type]  # nn.Module taking the image encoder
    decoder_class: ClassVar[type]  # DecoderForExport subclass
    pixel_mean_255: ClassVar[Tuple[float, float, float]]  # on the 0..255 scale a Core ML ImageType delivers
    pixel_std_255: ClassVar[Tuple[float, float, float]]
    mask_prompt: ClassVar[bool]  # the decoder takes a low-res mask prompt
    onnx_dynamic_tokens: ClassVar[bool]
    everything_refusal: ClassVar[Optional[str]] = None  # why everything mode is refused, if it is
    # the most tokens one prompt set may have (None: as many as the decoder's token counts); more would be
    # cut by the official model without a word, so samexport segment refuses them
    max_prompt_tokens: ClassVar[Optional[int]] = None
    extras: ClassVar[Tuple[str, ...]] = ()  # files besides the checkpoint `build_model` accepts by name
    # each click and each box is its own query with one mask (no negative clicks); `everything` is a head
    prompts_are_queries: ClassVar[bool] = False
    segments_video: ClassVar[bool] = False  # video instance segmentation (`segment --video`)
    # exported parts `bench` measures: the decoder once per prompt size, the others once
    bench_parts: ClassVar[Tuple[str, ...]] = ("encoder", "decoder")

    def bench_sizes(self, part: str, points: Sequence[int]) -> Tuple[Optional[int], ...]:
        """The sizes bench measures a part at: a decoder's clicks (`points`), one row for other parts."""
        return tuple(points) if part == "decoder" else (None,)

    default_input_size: ClassVar[Tuple[int, int]]  # (h, w) of the exported encoder's input

    def encoder_input(
        self, input_hw: Tuple[int, int], image_input: bool, image_text: str, contract: Dict
    ) -> Tensor:
        """The encoder's `image` input: 8-bit RGB (the input subtracts the mean; 1/std is folded into the
        first convolution) described by `image_text`, or the normalized float32 tensor."""
        h, w = input_hw
        if image_input:
            bias = tuple(-m for m in self.pixel_mean_255)
            return Tensor("image", (1, 3, h, w), image_text, image=True, pixel_bias=bias, fill="pixels")
        return Tensor(
            "image",
            (1, 3, h, w),
            f"float32 (1, 3, {h}, {w}), already normalized with mean {contract['pixel_mean']} / std "
            f"{contract['pixel_std']} ({contract['pixel_scale']} scale)",
        )

    def build(self, image_encoder: nn.Module) -> nn.Module:
        return self.model_class(image_encoder)

    # -- what `convert` exports (samexport.parts); SAM-style families mix in `sam_style.SamStyleParts` ----
    @abstractmethod
    def exported_parts(self, options) -> Tuple[str, ...]:
        """The parts `convert` writes with these options (known before the model is built)."""

    @abstractmethod
    def check_convert_options(self, spec, options) -> None:
        """Refuse, before any work, convert options this family has no use for."""

    @abstractmethod
    def export_shapes(self, options) -> "ExportShapes":
        """The sizes the export fixes for these options."""

    @abstractmethod
    def export_contract(self, shapes: "ExportShapes") -> Dict:
        """What an app must feed the exports (the manifest's and every file's `input_contract`)."""

    @abstractmethod
    def prompt_manifest(self, shapes: "ExportShapes") -> Dict:
        """The manifest's `decoder_prompt` section."""

    @abstractmethod
    def reference(self, model: nn.Module, shapes: "ExportShapes"):
        """The official model on the validation image (`.tensor` and `.embeddings` at least), computed once
        and shared by every target's parts."""

    @abstractmethod
    def part_interfaces(self, shapes: "ExportShapes", form: "PartForm") -> Dict[str, "Interface"]:
        """part -> its interface in the form a target asks for (every part this family can export)."""

    @abstractmethod
    def export_parts(
        self, model, fused, shapes: "ExportShapes", form: "PartForm", reference
    ) -> Dict[str, "Part"]:
        """part -> Part: `fused` is exported, `model` (the official computation) gives the references."""

    def load_extras(self, model: nn.Module, fill, **extras) -> None:  # noqa: B027 (optional hook)
        """Load what the checkpoint does not hold (files named in `extras`); `fill(key, like)` is the
        deterministic weight fill when the model has no checkpoint, else None."""

    @property
    def prompt_rule(self) -> PromptRule:
        """The one rule the model's `prompt_tokens` and this family's token counts both follow."""
        return self.model_class.prompt_rule

    def token_counts(self, points: Sequence[int]) -> List[int]:
        """Decoder token counts that make every prompt of `points` points exact (a box counts as 2)."""
        return self.prompt_rule.token_counts(points)

    def click_tokens(self, clicks: int) -> int:
        """Tokens of a prompt made of `clicks` clicks alone."""
        return self.prompt_rule.click_tokens(clicks)

    def clicks_filling(self, tokens: int) -> int:
        """How many clicks make a clicks-only prompt of exactly `tokens` tokens."""
        return self.prompt_rule.clicks_filling(tokens)

    @abstractmethod
    def input_contract(self) -> Dict:
        """What an app must feed the encoder and decoder (manifests, metadata, `samexport info`)."""

    @abstractmethod
    def app_canvas(self, image: np.ndarray) -> np.ndarray:
        """The 1024x1024 uint8 RGB picture an app hands a Core ML image input."""

    @abstractmethod
    def image_input_text(self) -> str:
        """The Core ML image input's description."""

    @abstractmethod
    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """HxWx3 uint8 RGB -> the encoder's float32 input (the official pipeline)."""

    @abstractmethod
    def transform_coords(self, coords, original_hw: Tuple[int, int]) -> torch.Tensor:
        """(..., 2) original-image (x, y) pixels -> the model frame."""

    @abstractmethod
    def postprocess_masks(self, low_res: torch.Tensor, original_hw: Tuple[int, int]) -> torch.Tensor:
        """Mask logits -> logits at the original size (threshold at 0)."""

    def click_prompts(self, points: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, 2) model-frame points -> one positive click per prompt set as the everything mode feeds
        the decoder: coords (B, T, 2), labels (B, T). Raises InputError where the family has none."""
        from ..errors import InputError

        raise InputError(self.everything_refusal or f"the {self.name} family has no everything mode")

    def decoder_signature(
        self, token_counts: Sequence[int], batch_sizes: Sequence[int] = (1,)
    ) -> DecoderSignature:
        return DecoderSignature(
            tuple(token_counts),
            self.mask_prompt,
            self.onnx_dynamic_tokens,
            tuple(sorted(set(batch_sizes))),
            self.click_tokens(1),
        )

    def decoder_for_export(self, model: nn.Module, packed: bool) -> nn.Module:
        return self.decoder_class(model, packed_points=packed).eval()

    def param_counts(self, model: nn.Module) -> Dict[str, int]:
        """Encoder, decoder and total parameter counts."""
        encoder = sum(p.numel() for p in model.image_encoder.parameters())
        decoder = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("image_encoder."))
        return {"encoder": encoder, "decoder": decoder, "total": encoder + decoder}

    def model_facts(self, model: nn.Module, gmacs) -> Dict:
        """GMACs (`gmacs(fn)` counts one call), fp16 weight sizes and shapes, on the meta device."""
        image = torch.empty(1, 3, 1024, 1024)
        embeddings = torch.empty(EMBEDDINGS_SHAPE)
        tokens = self.click_tokens(1)
        coords, labels = torch.empty(1, tokens, 2), torch.zeros(1, tokens, dtype=torch.int64)

        def run_decoder():
            return model.decode_tensors(embeddings, coords, labels)

        parts = {
            "encoder": EncoderForExport(model.image_encoder),
            "decoder": self.decoder_for_export(model, True),
        }
        masks, iou = run_decoder()
        return {
            "gmacs": {
                "encoder_1024": round(gmacs(lambda: model.image_encoder(image)), 2),
                f"decoder_{tokens}_tokens": round(gmacs(run_decoder), 3),
            },
            "fp16_mb": fp16_megabytes(parts),
            "shapes": {
                "image": [1, 3, 1024, 1024],
                "image_embeddings": list(model.image_encoder(image).shape),
                "low_res_masks": list(masks.shape),
                "iou_predictions": list(iou.shape),
            },
        }

    def __repr__(self) -> str:
        return f"<family {self.name}>"


FP16_MB_COVERS = (
    "the weights an fp16 package stores, 2 bytes per value of the exported modules' parameters and "
    "buffers (the decoder's dense positional encoding included); a package adds its program and "
    "constants the converter precomputes (attention biases, position embeddings): measured, the "
    "decoders come within 2%, the encoders up to 15% above"
)


def fp16_megabytes(parts: Dict[str, nn.Module]) -> Dict:
    """fp16 megabytes of each export module's floating-point parameters and buffers (FP16_MB_COVERS)."""
    sizes = {
        part: round(sum(v.numel() for v in m.state_dict().values() if v.is_floating_point()) * 2 / 1e6, 1)
        for part, m in parts.items()
    }
    return sizes | {"covers": FP16_MB_COVERS}


def common_contract() -> Dict:
    """Contract entries every 1024-input, 256-mask family shares."""
    return {
        "model_input_size": [1024, 1024],
        "coordinate_frame": "(x, y) pixels of the 1024x1024 model input",
        "point_labels": {
            "1": "positive click",
            "0": "negative click",
            "2": "box top-left",
            "3": "box bottom-right",
            "-1": "padding",
        },
        "mask_threshold": 0.0,
        "low_res_mask_size": [256, 256],
        "multimask_selection": "token 0 is the single-mask output; for ambiguous prompts use tokens 1..3 "
        "and pick the highest IoU score",
    }
