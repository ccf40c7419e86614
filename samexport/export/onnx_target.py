"""ONNX target: every part as an opset-20 graph (dynamic prompt-set and token axes), simplified or
int8-quantized, its samexport metadata in `metadata_props`, checked with onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

from ..errors import UsageError
from .target import ExportJob, ExportTarget, part_metadata, refuse_over_single_file_limit, register_target

ONNX_SINGLE_FILE_LIMIT = 2**31 - 64 * 2**20  # protobuf's 2 GiB, less room for the graph


@register_target
class OnnxTarget(ExportTarget):
    """`<stem><Part>[Int8].onnx` per part; an encoder takes the normalized float32 tensor."""

    name = "onnx"
    title = "ONNX"
    extension = ".onnx"
    compressions = ("none", "int8")
    exact_runtimes = ("onnxruntime",)
    packages = ("onnx", "onnxruntime", "onnxsim")
    runs_on = "onnxruntime (CPU)"
    packed_prompts = False
    dynamic = True

    precisions = ("fp32",)  # ONNX graphs are float32 whatever --precision

    def bytes_per_weight(self, options) -> float:
        return 1 if options.compress == "int8" else 4

    def check_options(self, spec, options) -> None:
        """Refuse an encoder too large for one protobuf file (SAM ViT-H) before any work."""
        if options.compress not in self.compressions:
            raise UsageError(f"--compress {options.compress} is Core ML only; use --compress int8 for ONNX")
        refuse_over_single_file_limit(spec, ONNX_SINGLE_FILE_LIMIT, "ONNX encoder", "protobuf's")

    def export(self, job: ExportJob, paths: Dict[str, Path]) -> Tuple[Dict, object]:
        from . import onnx_export

        options, progress = job.options, job.progress
        parts = job.parts(self.form(options))
        section: Dict = {"opset": onnx_export.OPSET}
        for name, part in parts.items():
            interface, path = part.interface, paths[name]
            raw = path.with_name(f"{name}.raw.onnx")
            with progress.step(f"ONNX {name} export"):
                onnx_export.export(
                    part.module(),
                    part.example(),
                    raw,
                    interface.input_names,
                    interface.output_names,
                    interface.dynamic_axes,
                )
            entry: Dict = {"interface": interface.describe(), **interface.notes}
            if options.compress == "int8":
                with progress.step(f"ONNX {name} int8 quantization"):
                    entry["quantization"] = onnx_export.quantize_int8(raw, path)
                entry.update(
                    simplified=False,
                    graph="quantized from the unsimplified graph (onnxsim output cannot be quantized)",
                )
            else:
                with progress.step(f"ONNX {name} simplification"):
                    onnx_export.copy_model(raw, path)
                    simplified, note = onnx_export.simplify(path)
                entry.update(simplified=simplified, graph=note)
            raw.unlink()
            onnx_export.set_metadata(path, part_metadata(job, part, self.precision(options), self))
            section[name] = entry
        if not options.validate:
            return section, None
        return section, self.check(job, parts, paths)

    def runner(self, path: Path, method: str = "auto", fp32_reference: bool = True):
        from .onnx_runner import OnnxRunner

        return OnnxRunner(path)

    def read_metadata(self, path: Path) -> Dict[str, str]:
        from . import onnx_export

        return onnx_export.read_metadata(path)
