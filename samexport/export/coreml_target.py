"""Core ML target: ML-program packages (ImageType encoder, enumerated-shape decoder) with metadata,
checked structurally and numerically (Core ML prediction on a Mac, the NumPy evaluator elsewhere)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Tuple

import torch

from ..coreml_package import CoreMLPackage
from ..errors import SamExportError, UsageError
from ..families import EncoderForExport
from ..platforms import is_apple_silicon
from ..registry import ModelSpec
from . import calibration, coreml_check, coreml_compress, coreml_export
from .compression import COMPRESSIONS, compression, parse_keep_layers
from .quality import floor_for
from .target import ExportJob, ExportTarget, register_target

POINT_INPUT_NOTE = (
    "packed: points (1, N, 3) = (x, y, label) per token, N one of the enumerated token counts "
    "(EnumeratedShapes on one input; below iOS18 Core ML refuses them on two inputs, and RangeDim "
    "models use the Neural Engine only at their default)"
)


@register_target
class CoreMLTarget(ExportTarget):
    """`<Swift name>Encoder.mlpackage` and `<Swift name>Decoder.mlpackage`, named for the Swift classes
    Xcode generates."""

    name = "coreml"
    title = "Core ML"
    compressions = tuple(COMPRESSIONS)

    def artifact_names(self, spec: ModelSpec, options) -> Dict[str, str]:
        return {
            "coreml_encoder": f"{spec.swift_name}Encoder{options.variant_suffix}.mlpackage",
            "coreml_decoder": f"{spec.swift_name}Decoder{options.variant_suffix}.mlpackage",
        }

    def export(self, job: ExportJob, paths: Dict[str, Path]) -> Tuple[Dict, Dict]:
        options, progress, family, signature = job.options, job.progress, job.spec.family, job.signature
        encoder_path, decoder_path = paths["coreml_encoder"], paths["coreml_decoder"]
        mode = compression(options.compress)
        if options.image_input == "image":
            encoder_module = EncoderForExport(job.fused.image_encoder, pixel_std=family.pixel_std_255)
            encoder_inputs = [coreml_export.image_input(family.pixel_mean_255)]
        else:
            encoder_module = EncoderForExport(job.fused.image_encoder)
            encoder_inputs = [coreml_export.tensor_input("image", (1, 3, 1024, 1024))]
        with progress.step("Core ML encoder trace"):
            traced = coreml_export.trace(encoder_module, torch.zeros(1, 3, 1024, 1024))
        with progress.step("Core ML encoder conversion"):
            encoder = coreml_export.convert(
                traced, encoder_inputs, ["imageEmbeddings"], options.precision, options.min_target
            )
            del traced
        decoder_inputs = [
            coreml_export.tensor_input(name, shape) for name, shape in signature.coreml_shapes().items()
        ]
        with progress.step("Core ML decoder conversion"):
            traced = coreml_export.trace(
                family.decoder_for_export(job.fused, packed=True), signature.example(packed=True)
            )
            decoder = coreml_export.convert(
                traced, decoder_inputs, signature.outputs, options.precision, options.min_target
            )
        compressed = {}
        if mode.lossy:
            encoder, decoder, compressed = self.compress(job, mode, encoder, decoder)
        self.describe(job, encoder, decoder)
        with progress.step("Core ML save"):
            encoder.save(str(encoder_path))
            if options.decoder_shapes == "multifunction":
                coreml_export.save_static_functions(
                    decoder,
                    {signature.function_name(b, n): {"points": (b, n, 3)} for b, n in signature.shapes()},
                    decoder_path,
                )
            else:
                decoder.save(str(decoder_path))
        packages = {"encoder": CoreMLPackage(encoder_path), "decoder": CoreMLPackage(decoder_path)}
        with progress.step("Core ML package checks"):
            section = {part: self.structure(job, package, part) for part, package in packages.items()}
            section.update(
                point_input=POINT_INPUT_NOTE,
                image_input=options.image_input,
                decoder_shapes=options.decoder_shapes,
                min_target=options.min_target,
            )
            if compressed:
                section["compression"] = compressed
        if is_apple_silicon():
            with progress.step("Core ML compute plans (where each op runs)"):
                for part, package in packages.items():
                    section[part]["placement"] = placements(package.path)
        return section, self.check(job, packages)

    def compress(self, job: ExportJob, mode, encoder, decoder):
        """Both models compressed by `mode`, and what was done (kept layers, clipping, calibration,
        statistics of the weights compressed) for the manifest."""
        options, progress = job.options, job.progress
        keep = parse_keep_layers(options.keep_layers)
        kept = {
            "encoder": coreml_compress.kept_ops(encoder, keep),
            "decoder": coreml_compress.kept_ops(decoder, keep),
        }
        missing = coreml_compress.unmatched(keep, kept.values())
        if mode.weights and options.min_target == "iOS18":
            for part, model in (("encoder", encoder), ("decoder", decoder)):
                kept[part] = {**coreml_compress.fusion_hazards(model), **kept[part]}
        if missing:
            raise UsageError(
                f"--keep-layers {','.join(missing)} matches no weight layer of the encoder or decoder; "
                "give PyTorch module paths (e.g. image_encoder.features.0) or MIL op names; "
                "nothing was written"
            )
        record = {
            **mode.describe(),
            "kept_layers": kept,
            "weight_clip_sigmas": options.weight_clip,
            "weights": {
                "encoder": coreml_compress.weight_statistics(encoder, set(kept["encoder"])),
                "decoder": coreml_compress.weight_statistics(decoder, set(kept["decoder"])),
            },
        }
        samples = {"encoder": [], "decoder": []}
        if mode.activations:
            with progress.step("activation calibration inputs (generated images, PyTorch)"):
                samples["encoder"] = calibration.encoder_feeds(job.model, options.image_input == "image")
                samples["decoder"] = calibration.decoder_feeds(job.model, job.signature)
            record["calibration"] = calibration.describe(samples)
        models = {"encoder": encoder, "decoder": decoder}
        for part in models:
            with progress.step(f"Core ML {part} {mode.name} compression"):
                models[part] = coreml_compress.compress(
                    models[part], mode, kept[part], options.weight_clip, samples[part]
                )
        return models["encoder"], models["decoder"], record

    def describe(self, job: ExportJob, encoder, decoder) -> None:
        from ..version import __version__

        spec, options, family = job.spec, job.options, job.spec.family
        contract = family.input_contract()
        user = {
            "com.samexport.model": spec.name,
            "com.samexport.title": spec.title,
            "com.samexport.family": family.name,
            "com.samexport.checkpoint": job.checkpoint_sha256,
            "com.samexport.precision": options.precision,
            "com.samexport.compression": options.compress,
            "com.samexport.compression_config": json.dumps(
                {
                    **compression(options.compress).describe(),
                    "keep_layers": options.keep_layers,
                    "weight_clip_sigmas": options.weight_clip,
                }
            ),
            "com.samexport.min_target": options.min_target,
            "com.samexport.contract": json.dumps(contract),
        }
        image_text = (
            family.image_input_text()
            if options.image_input == "image"
            else f"float32 (1, 3, 1024, 1024), already normalized with mean {contract['pixel_mean']} / std "
            f"{contract['pixel_std']} ({contract['pixel_scale']} scale)"
        )
        coreml_export.set_metadata(
            encoder,
            f"{spec.title} image encoder (samexport)",
            __version__,
            {"image": image_text},
            {"imageEmbeddings": "float32 (1, 256, 64, 64) image embeddings for the decoder"},
            {
                **user,
                "com.samexport.part": "encoder",
                "com.samexport.letterbox_fill_rgb": json.dumps(contract["pad_color_rgb"]),
            },
        )
        inputs, outputs = job.signature.descriptions(contract)
        coreml_export.set_metadata(
            decoder,
            f"{spec.title} prompt encoder + mask decoder (samexport)",
            __version__,
            inputs,
            outputs,
            {
                **user,
                "com.samexport.part": "decoder",
                "com.samexport.token_counts": json.dumps(list(job.signature.token_counts)),
                "com.samexport.batch_sizes": json.dumps(list(job.signature.batch_sizes)),
                "com.samexport.decoder_shapes": options.decoder_shapes,
                "com.samexport.functions": json.dumps(
                    {job.signature.function_name(b, n): [b, n] for b, n in job.signature.shapes()}
                    if options.decoder_shapes == "multifunction"
                    else {"main": "enumerated"}
                ),
            },
        )

    def structure(self, job: ExportJob, package: CoreMLPackage, part: str) -> Dict:
        """Structural checks that need no Core ML runtime; fails the run if any does not hold."""
        io, census, spec = package.io, package.op_census(), package.spec
        checks: Dict[str, bool] = {}
        inputs = {f["name"]: f for f in io["inputs"]}
        outputs = {f["name"]: f for f in io["outputs"]}
        if part == "encoder":
            image = inputs.get("image", {})
            checks["image input"] = (
                image.get("kind") == "image" and image.get("width") == 1024
                if job.options.image_input == "image"
                else image.get("shape") == [1, 3, 1024, 1024]
            )
            checks["embeddings output float32 (1,256,64,64)"] = (
                outputs.get("imageEmbeddings", {}).get("dtype") == "float32"
            )
            checks["no batch_norm op"] = "batch_norm" not in census
        elif job.options.decoder_shapes == "multifunction":
            signature = job.signature
            expected = {signature.function_name(b, n): [b, n, 3] for b, n in signature.shapes()}
            declared = {}
            for name in package.functions:
                points = {f["name"]: f for f in package.io_of(name)["inputs"]}.get("points", {})
                declared[name] = points.get("shape", []) if not points.get("enumerated_shapes") else None
            checks[f"one static function per prompt shape ({len(expected)})"] = declared == expected
            checks["default function is one single-click prompt set"] = (
                package.function == signature.function_name(1, signature.default_tokens)
            )
        else:
            tokens, batches = list(job.signature.token_counts), list(job.signature.batch_sizes)
            points = inputs.get("points", {})
            shapes = {tuple(s[:2]) for s in points.get("enumerated_shapes", [])} or {
                tuple(points.get("shape", [0, 0])[:2])
            }
            checks[f"points accept exactly {batches} prompt sets of {tokens} tokens"] = shapes == {
                (b, n) for b in batches for n in tokens
            }
            checks["default shape is one single-click prompt set"] = points.get("shape", [])[:2] == [
                1,
                job.signature.default_tokens,
            ]
        if part == "decoder":
            checks["no range-flexible input"] = not any(f.get("range_flexible") for f in io["inputs"])
            checks["decoder inputs"] = set(inputs) == set(job.signature.input_names(packed=True))
            checks["decoder outputs"] = set(outputs) == set(job.signature.outputs)
        meta = spec.description.metadata
        checks["metadata complete"] = bool(
            meta.author
            and meta.license
            and meta.versionString
            and meta.shortDescription
            and "com.samexport.contract" in meta.userDefined
        )
        checks["all features described"] = all(
            f.shortDescription for f in list(package.description.input) + list(package.description.output)
        )
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            raise SamExportError(
                f"Core ML {part} package check failed: {', '.join(failed)}; nothing was written"
            )
        return {"io": io, "op_census": census, "ops_total": sum(census.values()), "checks": checks}

    def check(self, job: ExportJob, packages: Dict[str, CoreMLPackage]) -> Dict:
        """Both packages against the unfused PyTorch model, held to the common floor."""
        if not job.options.validate:
            return {"skipped": "--no-validate"}
        method = coreml_check.resolve_method("auto")
        how = "Core ML prediction" if method == "coreml" else "NumPy evaluation of the saved program"
        floor = floor_for(job.options.precision, job.options.compress, method)
        reference = job.reference
        with job.progress.step(f"Core ML encoder check ({how} vs PyTorch)"):
            case = coreml_check.encoder_case(job.model, reference.image, job.options.image_input == "image")
            embeddings: Dict = {}
            encoder = coreml_check.check_encoder(packages["encoder"], case, method, floor, keep=embeddings)
        coreml_check.raise_if_failed("encoder", encoder, "; nothing was written")
        tokens = list(job.signature.token_counts)
        with job.progress.step(f"Core ML decoder check ({how} vs PyTorch, {len(tokens)} token counts)"):
            cases = coreml_check.decoder_cases(
                job.model, reference.embeddings, reference.prompts, tokens, job.signature.batch_sizes
            )
            decoder = coreml_check.check_decoder(packages["decoder"], cases, method, floor)
        coreml_check.raise_if_failed("decoder", decoder, "; nothing was written")
        report = {"encoder": encoder, "decoder": decoder}
        if compression(job.options.compress).lossy:
            with job.progress.step("Core ML mask agreement (encoder + decoder packages vs PyTorch)"):
                masks = coreml_check.check_masks(
                    packages["decoder"],
                    job.model,
                    case,
                    embeddings["imageEmbeddings"],
                    reference.prompts,
                    tokens,
                    method,
                    floor.get("min_mask_iou"),
                )
            coreml_check.raise_if_failed("pair", masks, "; nothing was written")
            report["masks"] = masks
        return {**report, "passed": True}


def placements(package: Path) -> Dict:
    """Compute unit -> where Core ML places the package's ops (MLComputePlan; macOS 14.4+)."""
    import tempfile

    from ..coreml_package import coremltools
    from ..coreml_placement import placement_or_reason

    with tempfile.TemporaryDirectory() as tmp:
        compiled = coremltools().utils.compile_model(str(package), destination_path=f"{tmp}/model.mlmodelc")
        return {units.lower(): placement_or_reason(compiled, units) for units in ("ALL", "CPU_AND_NE")}
