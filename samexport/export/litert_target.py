"""LiteRT target (Android): every part as a `.tflite` with one signature per static shape (the default
first), inputs and outputs named as the ONNX graphs name them, samexport's metadata in the flatbuffer;
checked by Google's runtime on the XNNPACK CPU path Android phones use, in float32 inference (the same
arithmetic on every CPU).

fp16 is TFLite's float16 quantization: float16 weights, dequantized where they are used. A phone may run
such a file in float16 arithmetic (XNNPACK on ARMv8.2); the file says whether it is meant to
(`INFERENCE_KEY`), and a part meant to is also checked on a simulated float16 device
(`float16_device`), the same verdict on every CPU. Parts that declare float32 regions
(`keeps_float32_pooling`: RAP-SAM's parts, whose 54,400-key softmax and hard-mask poolings float16 cannot
hold; its prompt decoder's float16 inference measured 2.6 dB PSNR) and parts too costly to simulate are
meant for float32 inference and say so. `--compress int8` is TFLite's dynamic-range quantization (int8
weights, activations quantized per call, float32 elsewhere), held to the compressed floor as ONNX int8
is. Each file's structure (op census, largest rank, the ops above rank 4) and, when validated, the
largest activation of a call (float16's headroom) are recorded in the manifest. Encoders take the
normalized float32 tensor (NCHW, as ONNX).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

from .target import (
    ExportJob,
    ExportTarget,
    functions_of,
    part_metadata,
    refuse_over_single_file_limit,
    register_target,
)

FLATBUFFER_LIMIT = 2**31 - 64 * 2**20  # flatbuffers' 2 GiB offsets, less room for the graph
INFERENCE_KEY = "com.samexport.litert_inference"  # "float16" or "float32": the arithmetic it is meant for


@register_target
class LiteRTTarget(ExportTarget):
    """`<stem><Part>[FP32|Int8].tflite` per part."""

    name = "litert"
    title = "LiteRT"
    extension = ".tflite"
    compressions = ("none", "int8")
    exact_runtimes = ("litert",)
    packages = ("litert-torch", "ai-edge-litert", "ai-edge-quantizer")
    runs_on = "Google's LiteRT interpreter, XNNPACK"
    packed_prompts = False
    dynamic = False

    precisions = ("fp16", "fp32")
    compressed_precision = "fp32"  # dynamic-range int8: int8 weights, float32 activations

    def check_options(self, spec, options) -> None:
        super().check_options(spec, options)
        refuse_over_single_file_limit(spec, FLATBUFFER_LIMIT, "LiteRT flatbuffer", "flatbuffers'")

    def export(self, job: ExportJob, paths: Dict[str, Path]) -> Tuple[Dict, object]:
        from . import litert_export
        from .runners import function_for

        options, progress = job.options, job.progress
        precision = self.precision(options)
        parts = job.parts(self.form(options))
        weights = litert_export.weights_for(options.compress, precision)
        section: Dict = {"precision": precision, "weights": weights, "image_input": "tensor"}
        for name, part in parts.items():
            interface, path = part.interface, paths[name]
            functions = [(f.name, f.shapes) for f in interface.functions]
            with progress.step(f"LiteRT {name} conversion ({len(functions)} signatures)"):
                flatbuffer = litert_export.convert_part(
                    part.module(), interface.input_names, interface.output_names, functions, weights
                )
            inference = "float16" if self.runs_in_float16(options, part) else "float32"
            litert_export.write(
                flatbuffer, path, {**part_metadata(job, part, precision, self), INFERENCE_KEY: inference}
            )
            why = None
            if weights == "float16" and inference == "float32":
                from .float16_device import too_costly

                regions = interface.keeps_float32_pooling or interface.float32_sums_over
                why = "float32 regions" if regions else too_costly(part)
                progress.say(f"note: LiteRT {name} is meant for float32 inference ({why})")
            section[name] = {
                "interface": interface.describe(),
                "signatures": [n for n, _ in functions],
                "inference": inference,
                **({"inference_why": why} if why else {}),
                "structure": litert_export.structure(path),
                **interface.notes,
            }
        if not options.validate:
            return section, None
        report = self.check(job, parts, paths)
        for name, part in parts.items():
            _, feeds, _ = part.cases(None)[0]
            functions = {f.name: f.shapes for f in part.interface.functions}
            signature = function_for(paths[name], functions, feeds)
            with progress.step(f"LiteRT {name} float16 range (every activation of one call)"):
                section[name]["activations"] = litert_export.largest_activation(paths[name], signature, feeds)
        return section, report

    def runs_in_float16(self, options, part) -> bool:
        """Float16 files whose parts the simulation can judge and that need no float32 region (LiteRT has no
        per-op precision); the others are meant for float32 inference."""
        from .float16_device import too_costly

        return (
            super().runs_in_float16(options, part)
            and part.interface.float32_sums_over is None
            and too_costly(part) is None
        )

    def float16_way_out(self, options) -> str:
        return "--precision fp32 writes LiteRT files for float32 arithmetic, or leave litert out of --target"

    def runner(self, path: Path, method: str = "auto", fp32_reference: bool = True):
        from .litert_runner import LiteRTRunner

        return LiteRTRunner(path, functions_of(path, self.read_metadata(path)))

    def read_metadata(self, path: Path) -> Dict[str, str]:
        from . import litert_export

        return litert_export.read_metadata(path)
