"""What a model family is: the type that owns a model's conventions.

`Family` is what every family shares: the model class, the parts it exports (interfaces, modules,
validation cases), the sizes and contract an export fixes, and the runs `segment` makes of them.
`PromptFamily` adds what families prompted by clicks and boxes share: pixel statistics, preprocessing, the
prompt-token rule and the input contract written into manifests. What only SAM-style decoders have
(`DecoderSignature`, the decoder wrapper) is in sam_style.py. Code elsewhere asks the family; it never tests
a family's name.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from typing import Callable, ClassVar, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..modeling.prompt_rules import PromptRule
from ..parts import BenchFacts, ExportShapes, Interface, Part, PartForm, Tensor

# What bench measures of a prompt family's image encoder and prompt decoder (the decoder per prompt size,
# clicks -> N tokens, shown at one click in the paper table)
ENCODER_BENCH = BenchFacts(runs=5, column="{title}")
DECODER_BENCH = BenchFacts(runs=20, sweep="points", dim="N", column="{decoder}", column_size=1)


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


class Family(ABC):
    """What every family shares: its model, the parts it exports and how, the runs `segment` makes of them."""

    name: ClassVar[str]  # written into manifests, metadata and bench rows
    model_class: ClassVar[type]  # nn.Module taking the image encoder
    extras: ClassVar[Tuple[str, ...]] = ()  # files besides the checkpoint `build_model` accepts by name
    default_input_size: ClassVar[Tuple[int, int]]  # (h, w) of the exported encoder's input
    # exported parts `bench` measures: the decoder once per prompt size, the others once
    bench_parts: ClassVar[Tuple[str, ...]] = ("encoder", "decoder")

    def bench_sizes(self, part: str, points: Sequence[int]) -> Tuple[Optional[int], ...]:
        """The sizes bench measures a part at: a decoder's clicks (`points`), one row for other parts."""
        return tuple(points) if part == "decoder" else (None,)

    def bench_dims(self, facts: BenchFacts, size: Optional[int]) -> Dict[str, int]:
        """The symbolic dims one bench size sets (`BenchFacts.dim` to the size itself by default)."""
        return {facts.dim: size} if facts.dim and size is not None else {}

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

    @abstractmethod
    def part_modules(self, model: nn.Module, form: "PartForm") -> Dict[str, Callable[[], nn.Module]]:
        """part -> () -> its module over `model`: what every target lowers and a PyTorch session runs."""

    def session_shapes(self, input_size: Optional[Tuple[int, int]] = None) -> "ExportShapes":
        """The sizes a PyTorch session's interfaces are described at (its modules take any)."""
        return ExportShapes((1,), (1,), tuple(input_size or self.default_input_size))

    def unavailable_parts(self, model: nn.Module) -> Dict[str, str]:
        """part -> why this built model cannot run it (files it was built without); none by default."""
        return {}

    def segmenter(self, mode: str) -> Optional[Callable]:
        """The family's own `segment` runner for `mode` ("image": `(options, image, session, progress)`;
        "video": `(options, open_session, quiet)`, where `open_session(**convert_fields)` opens the chosen
        backend's session once the clip is checked), or None: the SAM-style prompt and everything
        pipelines for images, no video."""
        return None

    # `segment --video` follows the objects its prompts name (a tracker), instead of finding every instance
    tracks_prompted_objects: ClassVar[bool] = False

    def video_predictor(self, session, config=None):
        """The family's memory-bank tracker over `session` (the official video predictor's methods), or None
        where the family has none."""
        return None

    def load_extras(self, model: nn.Module, fill, **extras) -> None:  # noqa: B027 (optional hook)
        """Load what the checkpoint does not hold (files named in `extras`); `fill(key, like)` is the
        deterministic weight fill when the model has no checkpoint, else None."""

    @abstractmethod
    def param_counts(self, model: nn.Module) -> Dict[str, int]:
        """Encoder, decoder (the rest) and total parameter counts."""

    @abstractmethod
    def model_facts(self, model: nn.Module, gmacs) -> Dict:
        """GMACs (`gmacs(fn)` counts one call), fp16 weight sizes and shapes, on the meta device."""

    def __repr__(self) -> str:
        return f"<family {self.name}>"


FP16_MB_COVERS = (
    "the weights an fp16 package stores, 2 bytes per value of the exported modules' parameters and "
    "buffers (the decoder's dense positional encoding included); a package adds its program and "
    "constants the converter precomputes (attention biases, position embeddings): measured, the "
    "decoders come within 2%, the encoders up to 15% above"
)


class PromptFamily(Family):
    """A family that segments an image from clicks and boxes (SAM-style or RAP-SAM's queries): its pixel
    statistics and preprocessing, the prompt-token rule and the input contract apps follow."""

    decoder_title: ClassVar[str]  # the decoder's column in the paper table
    pixel_mean_255: ClassVar[Tuple[float, float, float]]  # on the 0..255 scale a Core ML ImageType delivers
    pixel_std_255: ClassVar[Tuple[float, float, float]]
    everything_refusal: ClassVar[Optional[str]] = None  # why everything mode is refused, if it is
    # the most tokens one prompt set may have (None: as many as the decoder's token counts); more would be
    # cut by the official model without a word, so samexport segment refuses them
    max_prompt_tokens: ClassVar[Optional[int]] = None
    # each click and each box is its own query with one mask (no negative clicks); `everything` is a head
    prompts_are_queries: ClassVar[bool] = False
    # exported parts `bench` measures: the decoder once per prompt size, the others once

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

    def session_shapes(self, input_size: Optional[Tuple[int, int]] = None) -> "ExportShapes":
        return ExportShapes(tuple(self.token_counts([1])), (1,), tuple(input_size or self.default_input_size))

    def bench_dims(self, facts: BenchFacts, size: Optional[int]) -> Dict[str, int]:
        """A prompt size is clicks: its dim takes the tokens that many clicks make."""
        if facts.sweep == "points" and size is not None:
            return {facts.dim: self.click_tokens(size)}
        return super().bench_dims(facts, size)

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
