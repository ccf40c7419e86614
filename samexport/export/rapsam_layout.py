"""RAP-SAM's export layout: encoder, prompt decoder and panoptic head, to ONNX and Core ML.

Files: `<Swift name>Encoder`, `<Swift name>Decoder` and `<Swift name>Panoptic` (.onnx / .mlpackage).
The panoptic head carries the class embeddings, so it is written when they are known: with
`--classifier`, or with the fixture fill (no checkpoint). Panoptic fusion runs in the app
(`samexport.panoptic.fuse`). Every part is checked against the official (unfused) PyTorch model on
the validation image at the export's input size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from ..errors import SamExportError, UsageError
from ..families.rapsam import DEFAULT_INPUT_SIZE
from ..families.rapsam_export import (
    ENCODER_OUTPUTS,
    PANOPTIC_INPUTS,
    PANOPTIC_OUTPUTS,
    PROMPT_INPUTS,
    PROMPT_OUTPUTS,
    PanopticHeadForExport,
    PromptDecoderForExport,
    encoder_for_export,
)
from ..modeling.rapsam import fixed_input
from . import onnx_export
from .quality import Case, check_cases, floor_for
from .samples import validation_image, validation_prompts
from .target import ExportJob, ExportLayout, ExportTarget, register_layout, register_target

# Raw IoU predictions are a handful of scores near 0..1, too few and too small for a PSNR to mean much
# in float16 (one 1e-3 rounding is 35 dB when the largest score is 0.06): held to an absolute bound.
FP16_IOU_MAX_ABS = 0.01
PROMPT_SEED = 3


@dataclass(frozen=True)
class RapSamSignature:
    """Fixed input size (h, w); the prompt decoder takes (1, N, 4) prompts for each N in `prompt_counts`
    (Core ML: enumerated, N = 1 the default; ONNX: any N)."""

    input_size: Tuple[int, int]
    prompt_counts: Tuple[int, ...]
    panoptic: bool

    @property
    def features_shape(self) -> Tuple[int, int, int, int]:
        return (1, 256, self.input_size[0] // 4, self.input_size[1] // 4)

    def prompt_shapes(self) -> List[Tuple[int, int, int]]:
        default = 1 if 1 in self.prompt_counts else self.prompt_counts[0]
        return [(1, default, 4)] + [(1, n, 4) for n in self.prompt_counts if n != default]

    def decoder_example(self) -> Tuple[torch.Tensor, ...]:
        h, w = self.input_size
        return (
            torch.zeros(self.features_shape),
            torch.zeros(self.prompt_shapes()[0]),
            torch.tensor([h, w]).float(),
        )

    def decoder_feeds(self, features: np.ndarray, prompts: torch.Tensor, resized_hw) -> Dict[str, np.ndarray]:
        return {
            "maskFeatures": np.asarray(features, dtype=np.float32),
            "prompts": prompts.numpy().astype(np.float32),
            "resizedSize": np.asarray(resized_hw, dtype=np.float32),
        }


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


@register_layout
class RapSamLayout(ExportLayout):
    name = "rapsam"

    def check_options(self, spec, options) -> None:
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

    def signature(self, spec, options) -> RapSamSignature:
        size = tuple(options.input_size or DEFAULT_INPUT_SIZE)
        return RapSamSignature(size, tuple(options.points), writes_panoptic(options))

    def reference(self, model, signature: RapSamSignature) -> RapSamReference:
        image = validation_image()
        tensor, resized_hw = fixed_input(image, signature.input_size)
        with torch.no_grad():
            features = model.image_encoder(tensor)
        prompts = validation_cases(model, image.shape[:2], signature.prompt_counts)
        outputs = {}
        for name, prompt in prompts:
            logits, iou = model.decode(features, prompt, resized_hw)
            outputs[name] = (logits.numpy(), iou.numpy())
        panoptic = tuple(t.numpy() for t in model.panoptic(features)) if signature.panoptic else None
        return RapSamReference(image, tensor, features, resized_hw, prompts, outputs, panoptic)

    def validate(self, model, infos, method: str) -> Dict[str, Dict]:
        """`samexport validate` of RAP-SAM packages, per export: its input size and prompt counts from the
        packages' metadata, the same checks as `convert`."""
        import json

        reports: Dict[str, Dict] = {}
        for key in dict.fromkeys(info.pair_key for info in infos):
            group = [info for info in infos if info.pair_key == key]
            meta = group[0].metadata
            signature = RapSamSignature(
                tuple(json.loads(meta["com.samexport.input_size"])),
                tuple(json.loads(meta["com.samexport.prompt_counts"])),
                any(info.part == "panoptic" for info in group),
            )
            packages = {info.part: info.package for info in group}
            checked_parts = check_packages(
                model, self.reference(model, signature), signature, packages, method, group[0].precision
            )
            reports.update({str(info.path): checked_parts[info.part] for info in group})
        return reports

    def input_contract(self, spec, signature: RapSamSignature) -> Dict:
        return spec.family.input_contract(signature.input_size)

    def prompt_manifest(self, options, signature: RapSamSignature) -> Dict:
        return {
            "prompt_counts": list(signature.prompt_counts),
            "input_size": list(signature.input_size),
            "prompt_layout": "(1, N, 4) xyxy boxes in the resized frame, a click as a 6x6 box; N independent "
            "queries per call (Core ML: N enumerated, ONNX: any N)",
            "panoptic_head": signature.panoptic,
        }


def writes_panoptic(options) -> bool:
    """The panoptic head holds the class embeddings: written with --classifier, or with the fixture fill."""
    return options.checkpoint is None or options.classifier is not None


def part_names(spec, options, extension: str) -> Dict[str, str]:
    target = extension.lstrip(".").replace("mlpackage", "coreml")
    names = {
        f"{target}_encoder": f"{spec.swift_name}Encoder{extension}",
        f"{target}_decoder": f"{spec.swift_name}Decoder{extension}",
    }
    if writes_panoptic(options):
        names[f"{target}_panoptic"] = f"{spec.swift_name}Panoptic{extension}"
    return names


def floors(precision: str, runtime: str) -> Dict[str, Dict[str, Dict]]:
    """part -> output -> floor: the common floor (fp16 IoU scores held to an absolute bound). The heads are
    checked under their own hard masks (quality.check_cases), so their float32 floor is the common one."""
    common = floor_for(precision, "none", runtime)
    iou = {"max_abs": FP16_IOU_MAX_ABS} if precision == "fp16" else common
    return {
        "encoder": {"maskFeatures": common},
        "decoder": {"maskLogits": common, "iouScores": iou},
        "panoptic": {"classLogits": common, "maskLogits": common},
    }


def part_cases(
    reference: RapSamReference,
    signature: RapSamSignature,
    part: str,
    image_feed: Optional[Tuple[np.ndarray, np.ndarray]] = None,
) -> List[Case]:
    """Validation cases of one part. The encoder's: the official tensor, or `image_feed` = (feed, PyTorch's
    features for exactly those pixels) for an image input; the heads get PyTorch's features."""
    features = reference.embeddings.numpy()
    if part == "encoder":
        feed, expected = image_feed or (reference.tensor.numpy(), features)
        return [("validation image", {"image": feed}, {"maskFeatures": expected})]
    if part == "decoder":
        return [
            (
                name,
                signature.decoder_feeds(features, prompt, reference.resized_hw),
                dict(zip(PROMPT_OUTPUTS, reference.outputs[name])),
            )
            for name, prompt in reference.prompts
        ]
    return [("object queries", {"maskFeatures": features}, dict(zip(PANOPTIC_OUTPUTS, reference.panoptic)))]


def recompute_under(model, reference: RapSamReference, part: str):
    """quality.Recompute for a head: PyTorch's outputs of one case under the export's own hard masks, and
    PyTorch's logits at each of them; None for the encoder (it has no hard masks)."""
    from ..modeling.rapsam_head import GivenHardMasks

    if part == "encoder":
        return None
    prompts = dict(reference.prompts)

    def recompute(name: str, masks) -> Tuple[Dict[str, np.ndarray], List[np.ndarray]]:
        with torch.no_grad(), GivenHardMasks(masks) as given:
            if part == "decoder":
                outputs = model.decode(reference.embeddings, prompts[name], reference.resized_hw)
            else:
                outputs = model.panoptic(reference.embeddings)
        names = PROMPT_OUTPUTS if part == "decoder" else PANOPTIC_OUTPUTS
        return dict(zip(names, (t.numpy() for t in outputs))), [t.numpy() for t in given.logits]

    return recompute


def image_feed(
    model, reference: RapSamReference, signature: RapSamSignature
) -> Tuple[np.ndarray, np.ndarray]:
    """The app's 8-bit canvas at the export's input size, as an image input receives it, and PyTorch's
    features for exactly those pixels."""
    from .coreml_check import canvas_features

    return canvas_features(model, model.spec.family.app_canvas(reference.image, signature.input_size))


def check_packages(
    model, reference: RapSamReference, signature: RapSamSignature, packages: Dict, method: str, precision: str
) -> Dict[str, Dict]:
    """part -> report of each Core ML package (Core ML prediction or the NumPy evaluator) vs PyTorch."""
    from . import coreml_check

    floor_by_part = floors(precision, method)
    reports = {}
    for part, package in packages.items():
        is_image = any(f["name"] == "image" and f["kind"] == "image" for f in package.io["inputs"])
        feed = image_feed(model, reference, signature) if part == "encoder" and is_image else None
        description, run = coreml_check.case_runner(package, method)
        cases = part_cases(reference, signature, part, feed)
        recompute = recompute_under(model, reference, part)
        result = check_cases(cases, run, floor_by_part[part], coreml_check.failure_origin, recompute)
        reports[part] = {"method": description, **result}
    return reports


def checked(report: Dict, part: str, target: str) -> Dict:
    """The report, or a one-line SamExportError naming the first failure."""
    if report["failures"]:
        more = f" (+{len(report['failures']) - 1} more)" if len(report["failures"]) > 1 else ""
        raise SamExportError(
            f"{target} {part} falls below the quality floor: {report['failures'][0]}{more}; "
            "nothing was written"
        )
    return report


def export_parts(job: ExportJob) -> Dict[str, tuple]:
    """part -> (module, example inputs, input names, output names) of what both targets export."""
    signature = job.signature
    return {
        "encoder": (
            encoder_for_export(job.fused),
            (torch.zeros(1, 3, *signature.input_size),),
            ["image"],
            list(ENCODER_OUTPUTS),
        ),
        "decoder": (
            PromptDecoderForExport(job.fused).eval(),
            signature.decoder_example(),
            list(PROMPT_INPUTS),
            list(PROMPT_OUTPUTS),
        ),
        "panoptic": (
            PanopticHeadForExport(job.fused).eval(),
            (torch.zeros(signature.features_shape),),
            list(PANOPTIC_INPUTS),
            list(PANOPTIC_OUTPUTS),
        ),
    }


def check_onnx_part(
    path: Path, part: str, model, reference: RapSamReference, signature: RapSamSignature, floors: Dict
) -> Dict:
    """One ONNX part run by onnxruntime against PyTorch (the heads under their own hard masks)."""
    session, names, masks = onnx_export.session_with_hard_masks(path)

    def run(feeds):
        values = session.run(None, feeds)
        extras = {"hard_masks": values[len(names) :]} if masks else {}
        return dict(zip(names, values[: len(names)])), extras

    cases = part_cases(reference, signature, part)
    return check_cases(cases, run, floors, recompute=recompute_under(model, reference, part))


@register_target
class RapSamOnnxTarget(ExportTarget):
    """Encoder (modulated deformable convolutions as ONNX DeformConv), prompt decoder (any N) and panoptic
    head."""

    name = "onnx"
    title = "ONNX"
    layout = "rapsam"
    compressions = ("none",)

    def artifact_names(self, spec, options) -> Dict[str, str]:
        return part_names(spec, options, ".onnx")

    def export(self, job: ExportJob, paths: Dict[str, Path]) -> Tuple[Dict, Dict]:
        parts = export_parts(job)
        dynamic = {
            "decoder": {
                "prompts": {1: "numPrompts"},
                "maskLogits": {1: "numPrompts"},
                "iouScores": {1: "numPrompts"},
            }
        }
        section: Dict = {"opset": onnx_export.OPSET}
        for key, path in paths.items():
            part = key.split("_", 1)[1]
            module, example, inputs, outputs = parts[part]
            with job.progress.step(f"ONNX {part} export"):
                onnx_export.export(module, example, path, inputs, outputs, dynamic.get(part))
                simplified, note = onnx_export.simplify(path)
            section[part] = {"simplified": simplified, "graph": note}
        section["encoder"]["deformable_convolution"] = "ONNX DeformConv (opset 19+), one per neck level"
        section["decoder"]["num_prompts"] = "dynamic"
        if not job.options.validate:
            return section, {"skipped": "--no-validate"}
        with job.progress.step("ONNX validation (onnxruntime vs PyTorch)"):
            return section, self.check(job, paths)

    def check(self, job: ExportJob, paths: Dict[str, Path]) -> Dict:
        floor_by_part = floors("fp32", "onnxruntime")
        report: Dict = {"reference": "unfused PyTorch model", "runtime": "onnxruntime (CPU)"}
        for key, path in paths.items():
            part = key.split("_", 1)[1]
            result = check_onnx_part(path, part, job.model, job.reference, job.signature, floor_by_part[part])
            report[part] = checked(result, part, "ONNX")
        report["passed"] = True
        return report


@register_target
class RapSamCoreMLTarget(ExportTarget):
    """ML programs: image-input encoder (DCNv2 as `resample`), enumerated-N prompt decoder, panoptic head;
    fp16 keeps what `coreml_precision` names in float32."""

    name = "coreml"
    title = "Core ML"
    layout = "rapsam"
    compressions = ("none",)

    def artifact_names(self, spec, options) -> Dict[str, str]:
        return part_names(spec, options, ".mlpackage")

    def export(self, job: ExportJob, paths: Dict[str, Path]) -> Tuple[Dict, Dict]:
        from ..coreml_package import CoreMLPackage
        from . import coreml_export
        from .coreml_precision import float32_region

        options, signature, family = job.options, job.signature, job.spec.family
        parts = export_parts(job)
        h, w = signature.input_size
        image_input = options.image_input == "image"
        if image_input:
            parts["encoder"] = (
                encoder_for_export(job.fused, family.pixel_std_255),
                *parts["encoder"][1:],
            )
        input_types = {
            "encoder": [
                coreml_export.image_input(family.pixel_mean_255, (1, 3, h, w))
                if image_input
                else coreml_export.tensor_input("image", (1, 3, h, w))
            ],
            "decoder": [
                coreml_export.tensor_input("maskFeatures", signature.features_shape),
                coreml_export.tensor_input("prompts", signature.prompt_shapes()),
                coreml_export.tensor_input("resizedSize", (2,)),
            ],
            "panoptic": [coreml_export.tensor_input("maskFeatures", signature.features_shape)],
        }
        section: Dict = {"image_input": options.image_input, "min_target": options.min_target}
        packages = {}
        for key, path in paths.items():
            part = key.split("_", 1)[1]
            module, example, _, outputs = parts[part]
            with job.progress.step(f"Core ML {part} conversion"):
                traced = coreml_export.trace(module, example)
                mlmodel = coreml_export.convert(
                    traced,
                    input_types[part],
                    outputs,
                    options.precision,
                    options.min_target,
                    float32_region(),
                )
                del traced
            self.describe(job, mlmodel, part)
            with job.progress.step(f"Core ML {part} save"):
                mlmodel.save(str(path))
            packages[part] = CoreMLPackage(path)
            section[part] = {"io": packages[part].io, "op_census": packages[part].op_census()}
        section["encoder"]["deformable_convolution"] = (
            "bilinear resample (align_corners) + 1x1 conv, per neck level"
        )
        section["fp16_float32_ops"] = (
            "hard-mask poolings and the ops they feed up to the next layer_norm; softmax over more than "
            "16384 keys and the matmul reading it (samexport.export.coreml_precision)"
        )
        if not options.validate:
            return section, {"skipped": "--no-validate"}
        return section, self.check(job, packages)

    def describe(self, job: ExportJob, mlmodel, part: str) -> None:
        import json

        from ..version import __version__
        from . import coreml_export

        spec, options, signature = job.spec, job.options, job.signature
        contract = spec.family.input_contract(signature.input_size)
        h, w = signature.input_size
        feature_text = f"float32 {signature.features_shape}: mask features from the encoder (stride 4)"
        texts = {
            "encoder": (
                {
                    "image": f"RGB {w}x{h}. {contract['letterbox']}. Normalization is inside the model."
                    if options.image_input == "image"
                    else f"float32 (1, 3, {h}, {w}), normalised with mean {contract['pixel_mean']} / std "
                    f"{contract['pixel_std']}"
                },
                {"maskFeatures": feature_text},
            ),
            "decoder": (
                {
                    "maskFeatures": feature_text,
                    "prompts": f"float32 (1, N, 4), N in {list(signature.prompt_counts)}: "
                    f"{contract['prompt_layout']}",
                    "resizedSize": "float32 (2,): the resized, unpadded image (h, w) the prompts are "
                    "normalised by",
                },
                {
                    "maskLogits": f"float32 (1, N, {h // 4}, {w // 4}) mask logits; "
                    f"{contract['mask_upscaling']}",
                    "iouScores": "float32 (1, N, 1) raw predicted IoU per prompt",
                },
            ),
            "panoptic": (
                {"maskFeatures": feature_text},
                {
                    "classLogits": "float32 (1, 100, 134) raw class logits (softmax over the last axis; "
                    "133 = no object)",
                    "maskLogits": f"float32 (1, 100, {h // 4}, {w // 4}) mask logits; fusion: "
                    f"{contract['panoptic']}",
                },
            ),
        }
        inputs, outputs = texts[part]
        coreml_export.set_metadata(
            mlmodel,
            f"{spec.title} {part} (samexport)",
            __version__,
            inputs,
            outputs,
            {
                "com.samexport.model": spec.name,
                "com.samexport.title": spec.title,
                "com.samexport.family": spec.family.name,
                "com.samexport.part": part,
                "com.samexport.checkpoint": job.checkpoint_sha256,
                "com.samexport.precision": options.precision,
                "com.samexport.min_target": options.min_target,
                "com.samexport.input_size": json.dumps(list(signature.input_size)),
                "com.samexport.prompt_counts": json.dumps(list(signature.prompt_counts)),
                "com.samexport.contract": json.dumps(contract),
            },
        )

    def check(self, job: ExportJob, packages) -> Dict:
        from . import coreml_check

        method = coreml_check.resolve_method("auto")
        with job.progress.step("Core ML checks (each package vs PyTorch)"):
            reports = check_packages(
                job.model, job.reference, job.signature, packages, method, job.options.precision
            )
        for part, report in reports.items():
            checked(report, part, "Core ML")
        return {"reference": "unfused PyTorch model", **reports, "passed": True}
