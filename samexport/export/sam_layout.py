"""The SAM-style export layout: an image encoder and a prompt decoder (`families.DecoderSignature`)."""

from __future__ import annotations

from typing import Dict

from ..errors import UsageError
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

    def prompt_manifest(self, options, signature) -> Dict:
        return {
            "points": list(options.points),
            "token_counts": list(signature.token_counts),
            "batch_sizes": {"onnx": "any", "coreml": list(signature.batch_sizes)},
        }
