"""ONNX target: encoder and decoder graphs (opset 20), simplified or int8-quantized, checked with
onnxruntime against the PyTorch reference."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

import torch

from ..families import EncoderForExport
from ..registry import ModelSpec
from . import onnx_export
from .compare import compare, worst
from .quality import floor_for, shortfalls
from .reference import prompt_batch
from .target import ExportJob, ExportTarget, register_target

ONNX_SINGLE_FILE_LIMIT = 2**31 - 64 * 2**20  # protobuf's 2 GiB, less room for the graph
ONNX_CHECK_BATCH = 4  # prompt sets in the batched validation call (the graph takes any number)


@register_target
class OnnxTarget(ExportTarget):
    """`<Swift name>Encoder.onnx` (image (1, 3, 1024, 1024), normalized) and `<Swift name>Decoder.onnx`."""

    name = "onnx"
    title = "ONNX"
    compressions = ("none", "int8")

    def artifact_names(self, spec: ModelSpec, options) -> Dict[str, str]:
        suffix = "Int8" if options.compress == "int8" else ""  # ONNX graphs are float32 whatever --precision
        return {
            "onnx_encoder": f"{spec.swift_name}Encoder{suffix}.onnx",
            "onnx_decoder": f"{spec.swift_name}Decoder{suffix}.onnx",
        }

    def check_options(self, spec: ModelSpec, options) -> None:
        """Refuse an encoder too large for one protobuf file (SAM ViT-H) before any work."""
        import math

        from ..checkpoint import expected_layout
        from ..errors import UsageError

        weight_bytes = 4 * sum(
            math.prod(shape)
            for key, shape in expected_layout(spec.name).items()
            if key.startswith("image_encoder.")
        )
        if weight_bytes >= ONNX_SINGLE_FILE_LIMIT:
            raise UsageError(
                f"the {spec.name} ONNX encoder would hold {weight_bytes / 1e9:.2f} GB of float32 "
                f"weights, over protobuf's 2 GB single-file limit (it would need external data "
                f"files); use --target coreml for this model"
            )

    def export(self, job: ExportJob, paths: Dict[str, Path]) -> Tuple[Dict, Dict]:
        progress, signature = job.progress, job.signature
        encoder_path, decoder_path = paths["onnx_encoder"], paths["onnx_decoder"]
        raw_encoder = encoder_path.with_name("encoder.raw.onnx")
        raw_decoder = decoder_path.with_name("decoder.raw.onnx")
        with progress.step("ONNX encoder export"):
            onnx_export.export(
                EncoderForExport(job.fused.image_encoder),
                (torch.zeros(1, 3, 1024, 1024),),
                raw_encoder,
                ["image"],
                ["imageEmbeddings"],
            )
        with progress.step("ONNX decoder export"):
            onnx_export.export(
                job.spec.family.decoder_for_export(job.fused, packed=False),
                signature.example(packed=False),
                raw_decoder,
                signature.input_names(packed=False),
                signature.outputs,
                signature.onnx_dynamic_axes(),
            )
        section: Dict = {"opset": onnx_export.OPSET, "encoder": {}, "decoder": signature.onnx_description()}
        parts = ((raw_encoder, encoder_path, "encoder"), (raw_decoder, decoder_path, "decoder"))
        if job.options.compress == "int8":
            with progress.step("ONNX int8 quantization"):
                for raw, final, part in parts:
                    section[part]["quantization"] = onnx_export.quantize_int8(raw, final)
                    section[part]["simplified"] = False
                    section[part]["graph"] = (
                        "quantized from the unsimplified graph (onnxsim output cannot be quantized)"
                    )
        else:
            with progress.step("ONNX simplification"):
                for raw, final, part in parts:
                    onnx_export.copy_model(raw, final)
                    simplified, note = onnx_export.simplify(final)
                    section[part].update({"simplified": simplified, "graph": note})
        raw_encoder.unlink()
        raw_decoder.unlink()
        if not job.options.validate:
            return section, {"skipped": "--no-validate"}
        with progress.step("ONNX validation (onnxruntime vs PyTorch)"):
            return section, self.check(job, encoder_path, decoder_path)

    def check(self, job: ExportJob, encoder_path: Path, decoder_path: Path) -> Dict:
        """onnxruntime vs the unfused PyTorch model on the validation inputs, held to the common floor."""
        from ..errors import SamExportError

        reference = job.reference
        embeddings = onnx_export.run(encoder_path, {"image": reference.tensor.numpy()})[0]
        encoder_result = compare(embeddings, reference.embeddings.numpy())
        decoder_session = onnx_export.session(decoder_path)
        batch = prompt_batch(job.model, reference.embeddings, job.signature.default_tokens, ONNX_CHECK_BATCH)
        with torch.no_grad():
            batch_outputs = tuple(o.numpy() for o in job.model.decode(reference.embeddings, *batch[1:3]))
        outputs = {**reference.outputs, batch[0]: batch_outputs}
        cases = {}
        for name, coords, labels, mask in [*reference.prompts, batch]:
            feeds = job.signature.feeds(reference.embeddings.numpy(), coords, labels, mask, packed=False)
            masks, iou = decoder_session.run(None, feeds)
            ref_masks, ref_iou = outputs[name]
            cases[name] = {"lowResMasks": compare(masks, ref_masks), "iouScores": compare(iou, ref_iou)}
        decoder_result = {
            "cases": cases,
            "worst_masks": worst({k: v["lowResMasks"] for k, v in cases.items()}),
            "worst_iou": worst({k: v["iouScores"] for k, v in cases.items()}),
        }
        floor = floor_for("fp32", job.options.compress, "onnxruntime")
        result = {
            "encoder": encoder_result,
            "decoder": decoder_result,
            "reference": "unfused PyTorch model",
            "floor": floor,
        }
        checked = [("encoder", encoder_result), ("decoder masks", decoder_result["worst_masks"])]
        if job.options.compress == "none":
            checked.append(("decoder IoU", decoder_result["worst_iou"]))
        for part, r in checked:
            misses = shortfalls(r, floor)
            if misses:
                fix = (
                    "use --compress none for ONNX"
                    if job.options.compress != "none"
                    else "nothing was written"
                )
                raise SamExportError(
                    f"{job.options.compress if job.options.compress != 'none' else 'fp32'} ONNX "
                    f"{part} falls below the quality floor ({', '.join(misses)}); {fix}"
                )
        result["passed"] = True
        return result
