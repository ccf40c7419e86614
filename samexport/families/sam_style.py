"""The parts SAM-style families export: an image encoder and a prompt decoder (`DecoderSignature`).

SAM, MobileSAM, RepViT-SAM, EfficientSAM and any family built on `SamStyleParts` share this
description; what differs between them (token rule, mask prompt, statistics, canvas) the family says.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, ClassVar, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..errors import InputError, UsageError
from ..parts import Case, ExportShapes, Function, Interface, Part, PartForm, Tensor
from ..samples import calibration_images, validation_image, validation_prompts
from .base import DECODER_BENCH, ENCODER_BENCH, EncoderForExport, fp16_megabytes

Prompt = Tuple[str, torch.Tensor, torch.Tensor, Optional[torch.Tensor]]  # name, coords, labels, mask
SYNTHETIC_SEED = 0
BATCH_SEED = 1
DYNAMIC_CHECK_BATCH = 4  # prompt sets in the batched validation call of a graph that takes any number
POINT_INPUT_NOTE = (
    "packed: points (B, N, 3) = (x, y, label) per token, (B, N) one of the declared shapes "
    "(EnumeratedShapes on one input; below iOS18 Core ML refuses them on two inputs, and RangeDim "
    "models use the Neural Engine only at their default)"
)


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


@dataclass
class Reference:
    """The official (unfused) model on the validation image: its input, embeddings and prompts."""

    image: np.ndarray
    tensor: torch.Tensor  # (1, 3, 1024, 1024) normalized
    embeddings: torch.Tensor  # (1, 256, 64, 64)
    prompts: List[Prompt]


def make_reference(model) -> Reference:
    image = validation_image()
    tensor = model.preprocess(image)
    with torch.no_grad():
        embeddings = model.image_encoder(tensor)
    return Reference(image, tensor, embeddings, scene_prompts(model, image, embeddings))


def scene_prompts(model, image: np.ndarray, embeddings: torch.Tensor) -> List[Prompt]:
    """The validation prompts placed on `image`, plus (for families with a mask prompt) the first again
    with its own best mask as the mask prompt."""
    hw = image.shape[:2]
    prompts: List[Prompt] = []
    for name, kwargs in validation_prompts(*hw):
        coords, labels = model.prompt_tokens(hw, **kwargs)
        prompts.append((name, coords, labels, None))
    if model.spec.family.mask_prompt:
        with torch.no_grad():
            first_masks, _ = model.decode(embeddings, prompts[0][1], prompts[0][2])
        prompts.append(("click + mask prompt", prompts[0][1], prompts[0][2], first_masks[:, 1:2]))
    return prompts


def prompt_batch(family, tokens: int, batch: int) -> Prompt:
    """`batch` prompt sets of `tokens` tokens each (seeded positive clicks, padded as the family pads a
    clicks-only prompt), for checking a decoder that takes several prompt sets per call."""
    clicks = family.clicks_filling(tokens)
    rng = np.random.default_rng(BATCH_SEED)
    coords = np.zeros((batch, tokens, 2), dtype=np.float32)
    coords[:, :clicks] = rng.uniform(0, 1024, (batch, clicks, 2))
    labels = np.full((batch, tokens), -1.0, dtype=np.float32)
    labels[:, :clicks] = 1.0
    return f"{batch} prompt sets of {clicks} clicks", torch.from_numpy(coords), torch.from_numpy(labels), None


def canvas_features(model, canvas: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """An app's HxWx3 uint8 canvas as an image input receives it ((1, 3, H, W) float32 0..255) and the
    model's encoder output for exactly those pixels (normalized with the family's statistics)."""
    family = model.spec.family
    pixels = torch.as_tensor(canvas).permute(2, 0, 1)[None].float()
    mean = torch.tensor(family.pixel_mean_255).view(1, 3, 1, 1)
    std = torch.tensor(family.pixel_std_255).view(1, 3, 1, 1)
    with torch.no_grad():
        embeddings = model.image_encoder((pixels - mean) / std)
    return pixels.numpy().astype(np.float32), embeddings.numpy()


def encoder_feed(model, image: np.ndarray, image_input: bool) -> Tuple[np.ndarray, np.ndarray]:
    """(feed, PyTorch's embeddings for exactly it): the app's 8-bit canvas for an image input, else the
    official tensor."""
    if image_input:
        return canvas_features(model, model.spec.family.app_canvas(image))
    tensor = model.preprocess(image)
    with torch.no_grad():
        embeddings = model.image_encoder(tensor).numpy()
    return tensor.numpy().astype(np.float32), embeddings


def decoder_prompts(
    family, prompts: List[Prompt], signature: DecoderSignature, dynamic: bool
) -> List[Prompt]:
    """The validation prompts the decoder takes, a case of several prompt sets per batch size above 1 (a
    graph taking any number: DYNAMIC_CHECK_BATCH), and seeded clicks for every token count they miss."""
    any_tokens = dynamic and family.onnx_dynamic_tokens
    chosen = [p for p in prompts if any_tokens or int(p[1].shape[1]) in signature.token_counts]
    batches = (DYNAMIC_CHECK_BATCH,) if dynamic else [b for b in signature.batch_sizes if b > 1]
    chosen += [prompt_batch(family, signature.default_tokens, b) for b in batches]
    covered = {int(coords.shape[1]) for _, coords, _, _ in chosen}
    rng = np.random.default_rng(SYNTHETIC_SEED)
    for n in signature.token_counts:
        if n in covered:
            continue
        clicks = family.clicks_filling(n)
        coords = rng.uniform(0, 1024, (1, n, 2))
        labels = np.concatenate([rng.integers(0, 2, clicks), -np.ones(n - clicks)])[None]
        coords[:, clicks:] = 0.0
        chosen.append(
            (
                f"{clicks} seeded clicks",
                torch.tensor(coords, dtype=torch.float32),
                torch.tensor(labels, dtype=torch.float32),
                None,
            )
        )
    return chosen


def decoder_cases(
    model, embeddings: torch.Tensor, prompts: List[Prompt], signature: DecoderSignature, form: PartForm
) -> List[Case]:
    cases = []
    for name, coords, labels, mask in decoder_prompts(model.spec.family, prompts, signature, form.dynamic):
        with torch.no_grad():
            masks, iou = model.decode(embeddings, coords, labels, mask_input=mask)
        feeds = signature.feeds(embeddings.numpy(), coords, labels, mask, packed=form.packed_prompts)
        cases.append((name, feeds, {"lowResMasks": masks.numpy(), "iouScores": iou.numpy()}))
    return cases


class SamStyleParts:
    """`Family` methods for an encoder + prompt decoder export (mixed into SAM-style families)."""

    default_input_size = (1024, 1024)
    decoder_class: ClassVar[type]  # DecoderForExport subclass
    mask_prompt: ClassVar[bool]  # the decoder takes a low-res mask prompt
    onnx_dynamic_tokens: ClassVar[bool]

    def exported_parts(self, options) -> Tuple[str, ...]:
        return ("encoder", "decoder")

    def check_convert_options(self, spec, options) -> None:
        for flag, value in (("--input-size", options.input_size), ("--classifier", options.classifier)):
            if value is not None:
                raise UsageError(
                    f"{flag} is for RAP-SAM (rapsam_r50); {spec.name} takes a fixed 1024x1024 input and no "
                    f"other files: drop {flag}"
                )

    def export_shapes(self, options) -> ExportShapes:
        return ExportShapes(tuple(self.token_counts(options.points)), tuple(options.batch))

    def signature_of(self, shapes: ExportShapes) -> DecoderSignature:
        return self.decoder_signature(shapes.token_counts, shapes.batch_sizes)

    def export_contract(self, shapes: ExportShapes) -> Dict:
        return self.input_contract()

    def prompt_manifest(self, shapes: ExportShapes) -> Dict:
        return {
            "token_counts": list(shapes.token_counts),
            "batch_sizes": list(shapes.batch_sizes),
            "dynamic_targets": "take any prompt-set count B"
            + (" and token count N" if self.onnx_dynamic_tokens else ""),
        }

    def reference(self, model, shapes: ExportShapes) -> Reference:
        return make_reference(model)

    def part_interfaces(self, shapes: ExportShapes, form: PartForm) -> Dict[str, Interface]:
        contract = self.input_contract()
        image = self.encoder_input((1024, 1024), form.image_input, self.image_input_text(), contract)
        embeddings = Tensor(
            "imageEmbeddings", EMBEDDINGS_SHAPE, "float32 (1, 256, 64, 64) image embeddings for the decoder"
        )
        encoder = Interface(
            "encoder",
            "image encoder",
            (image,),
            (embeddings,),
            (Function("main", {"image": image.shape}),),
            reparameterized=True,
            bench=ENCODER_BENCH,
        )
        signature = self.signature_of(shapes)
        return {"encoder": encoder, "decoder": self._decoder_interface(signature, form, contract)}

    def _decoder_interface(self, signature: DecoderSignature, form: PartForm, contract: Dict) -> Interface:
        sizes = f"B in {list(signature.batch_sizes)}, N in {list(signature.token_counts)}"
        if form.dynamic:
            sizes = "any B" + (", any N" if self.onnx_dynamic_tokens else f", N = {signature.default_tokens}")
        labels = "Labels: 1 positive, 0 negative, 2/3 box corners, -1 padding. " + (
            f"Layout: {contract['prompt_layout']}"
        )
        inputs = [Tensor("imageEmbeddings", EMBEDDINGS_SHAPE, "float32 (1, 256, 64, 64) from the encoder")]
        if form.packed_prompts:
            inputs.append(
                Tensor(
                    "points",
                    ("B", "N", 3),
                    f"float32 (B, N, 3): B prompt sets of N (x, y, label) tokens in the 1024 model frame, "
                    f"{sizes}. {labels}",
                    fill="points",
                )
            )
        else:
            inputs += [
                Tensor(
                    "pointCoords",
                    ("B", "N", 2),
                    f"float32 (B, N, 2) in the 1024 model frame, {sizes}",
                    fill="coords",
                ),
                Tensor("pointLabels", ("B", "N"), f"float32 (B, N). {labels}", fill="ones"),
            ]
        if self.mask_prompt:
            inputs += [
                Tensor(
                    "maskInput",
                    MASK_INPUT_SHAPE,
                    "float32 (1, 1, 256, 256) low-res logits of an earlier prediction, or zeros",
                    fill="zeros",
                ),
                Tensor(
                    "hasMaskInput", (1,), "float32 (1,): 1 when maskInput holds a mask, else 0", fill="zeros"
                ),
            ]
        outputs = (
            Tensor(
                "lowResMasks",
                ("B", 4, 256, 256),
                f"float32 (B, 4, 256, 256) mask logits of all 4 mask tokens; threshold 0.0 after upscaling: "
                f"{contract['mask_upscaling']}",
                threshold=0.0,
            ),
            Tensor(
                "iouScores",
                ("B", 4),
                f"float32 (B, 4) predicted IoU per mask token; {contract['multimask_selection']}",
                floor="predicted_iou",
            ),
        )
        functions = []
        for b, n in signature.shapes():
            example = signature.example(form.packed_prompts, n, b)
            functions.append(
                Function(
                    signature.function_name(b, n),
                    {t.name: tuple(e.shape) for t, e in zip(inputs, example)},
                )
            )
        notes = (
            {"point_inputs": POINT_INPUT_NOTE} if form.packed_prompts else {"point_inputs": SPLIT_POINTS_NOTE}
        )
        if form.dynamic:
            notes.update(signature.onnx_description())
        return Interface(
            "decoder",
            "prompt encoder + mask decoder",
            tuple(inputs),
            outputs,
            tuple(functions),
            dynamic_axes=signature.onnx_dynamic_axes() if form.dynamic else {},
            upstream={"imageEmbeddings": "encoder"},
            notes=notes,
            bench=DECODER_BENCH,
        )

    def part_modules(self, model, form: PartForm) -> Dict[str, Callable[[], nn.Module]]:
        """part -> () -> its module over `model` (what every target lowers, what a PyTorch session runs)."""
        pixel_std = self.pixel_std_255 if form.image_input else None
        return {
            "encoder": lambda: EncoderForExport(model.image_encoder, pixel_std=pixel_std).eval(),
            "decoder": lambda: self.decoder_for_export(model, packed=form.packed_prompts),
        }

    def export_parts(
        self, model, fused, shapes: ExportShapes, form: PartForm, reference: Reference
    ) -> Dict[str, Part]:
        interfaces = self.part_interfaces(shapes, form)
        signature = self.signature_of(shapes)

        def encoder_cases(upstream=None) -> List[Case]:
            feed, embeddings = encoder_feed(model, reference.image, form.image_input)
            return [("validation image", {"image": feed}, {"imageEmbeddings": embeddings})]

        def decoder_cases_under(upstream=None) -> List[Case]:
            embeddings = reference.embeddings
            if upstream is not None:
                embeddings = torch.from_numpy(np.asarray(upstream["imageEmbeddings"], dtype=np.float32))
            return decoder_cases(model, embeddings, reference.prompts, signature, form)

        def encoder_calibration() -> List[Dict[str, np.ndarray]]:
            return [
                {"image": encoder_feed(model, image, form.image_input)[0]} for image in calibration_images()
            ]

        def decoder_calibration() -> List[Dict[str, np.ndarray]]:
            feeds = []
            for image in calibration_images():
                with torch.no_grad():
                    embeddings = model.image_encoder(model.preprocess(image))
                prompts = scene_prompts(model, image, embeddings)
                feeds += [f for _, f, _ in decoder_cases(model, embeddings, prompts, signature, form)]
            return feeds

        modules = self.part_modules(fused, form)
        return {
            "encoder": Part(
                interfaces["encoder"],
                module=modules["encoder"],
                example=lambda: (torch.zeros(1, 3, 1024, 1024),),
                cases=encoder_cases,
                calibration=encoder_calibration,
            ),
            "decoder": Part(
                interfaces["decoder"],
                module=modules["decoder"],
                example=lambda: signature.example(packed=form.packed_prompts),
                cases=decoder_cases_under,
                calibration=decoder_calibration,
            ),
        }

    def click_prompts(self, points: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, 2) model-frame points -> one positive click per prompt set as the everything mode feeds
        the decoder: coords (B, T, 2), labels (B, T). Raises InputError where the family has none."""
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
