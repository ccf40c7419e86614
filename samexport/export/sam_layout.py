"""The SAM-style export layout: an image encoder and a prompt decoder (`families.DecoderSignature`)."""

from __future__ import annotations

from typing import Dict

from ..errors import UsageError
from .quality import floor_for
from .reference import make_reference
from .target import ExportLayout, register_layout


@register_layout
class SamLayout(ExportLayout):
    name = "sam"

    def check_options(self, spec, options) -> None:
        for flag, value in (("--input-size", options.input_size), ("--classifier", options.classifier)):
            if value is not None:
                raise UsageError(
                    f"{flag} is for RAP-SAM (rapsam_r50); {spec.name} takes a fixed 1024x1024 input and no "
                    f"other files: drop {flag}"
                )

    def signature(self, spec, options):
        family = spec.family
        return family.decoder_signature(family.token_counts(options.points), options.batch)

    def reference(self, model, signature):
        return make_reference(model)

    def validate(self, model, infos, method: str) -> Dict[str, Dict]:
        """Encoders and decoders against PyTorch; an encoder and decoder of one export also end to end."""
        from . import coreml_check

        reference = make_reference(model)
        reports: Dict[str, Dict] = {}
        encoded = {}  # (manifest or folder, variant) -> (encoder case, the package's embeddings)
        for info in infos:
            floor = floor_for(info.precision, info.compress, method)
            if info.part == "encoder":
                case = coreml_check.encoder_case(model, reference.image, info.image_input)
                kept: Dict = {}
                report = coreml_check.check_encoder(info.package, case, method, floor, keep=kept)
                encoded[info.pair_key] = (case, kept["imageEmbeddings"])
            else:
                cases = coreml_check.decoder_cases(
                    model, reference.embeddings, reference.prompts, info.token_counts, info.batch_sizes
                )
                report = coreml_check.check_decoder(info.package, cases, method, floor)
            reports[str(info.path)] = report
        for info in (i for i in infos if i.part == "decoder" and i.pair_key in encoded):
            case, embeddings = encoded[info.pair_key]
            floor = floor_for(info.precision, info.compress, method)
            masks = coreml_check.check_masks(
                info.package,
                model,
                case,
                embeddings,
                reference.prompts,
                info.token_counts,
                method,
                floor.get("min_mask_iou"),
            )
            report = reports[str(info.path)]
            report["masks"] = masks
            report["failures"] += masks["failures"]
            report["passed"] = not report["failures"]
        return reports

    def prompt_manifest(self, options, signature) -> Dict:
        return {
            "points": list(options.points),
            "token_counts": list(signature.token_counts),
            "batch_sizes": {"onnx": "any", "coreml": list(signature.batch_sizes)},
        }
