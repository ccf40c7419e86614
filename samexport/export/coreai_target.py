"""Core AI target (Apple, iOS/macOS 27): every part as an `.aimodel` asset, one static function per shape
(the default, one single-click prompt set, is `main`), in a segmenter bundle `<stem>.coreai/` whose
`metadata.json` carries Apple's bundle fields and samexport's contract; checked by Apple's own runtime
(held to the floor of a float32 runtime with its own kernels, `ExportTarget.exact_runtimes`).

Assets are float32: on Linux, Apple's runtime (coreai-core) computes a float16 graph in float16 end to end
on its reference CPU path, and the MobileSAM decoder exported that way came out at 25 dB PSNR against
PyTorch (the fp16 floor is 35 dB) at 75 s a call (benchmarks/coreai_precision.py); a float16 asset could
not be held to the floor here. Encoders take the normalized float32 tensor: `torch.export` declares no
image inputs and the Linux runtime cannot feed one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Tuple

from ..parts import Interface
from .target import ExportJob, ExportTarget, artifact_name, functions_of, part_metadata, register_target

BUNDLE_EXTENSION = ".coreai"


def entry_points(interface: Interface) -> List[Tuple[str, Dict[str, tuple]]]:
    """(function name, input shapes) of every function, the default named `main`."""
    return [("main", interface.default.shapes)] + [(f.name, f.shapes) for f in interface.functions[1:]]


@register_target
class CoreAITarget(ExportTarget):
    """`<stem>.coreai/<stem><Part>.aimodel` per part, beside the bundle's `metadata.json`."""

    name = "coreai"
    title = "Core AI"
    extension = ".aimodel"
    compressions = ("none",)
    exact_runtimes = ()
    packages = ("coreai-core", "coreai-torch")
    runs_on = "Apple's Core AI runtime"
    packed_prompts = True
    dynamic = False

    precisions = ("fp32",)  # see the module docstring

    def bundle_name(self, spec, options) -> str:
        return f"{spec.artifact_stem}{self.variant(options)}{BUNDLE_EXTENSION}"

    def file_names(self, spec, options) -> Dict[str, str]:
        bundle = self.bundle_name(spec, options)
        return {
            part: f"{bundle}/{artifact_name(spec.artifact_stem, part, self.variant(options), self.extension)}"
            for part in spec.family.exported_parts(options)
        }

    def export(self, job: ExportJob, paths: Dict[str, Path]) -> Tuple[Dict, object]:
        from . import coreai_export

        options, progress = job.options, job.progress
        parts = job.parts(self.form(options))
        section: Dict = {"precision": "fp32", "image_input": "tensor", "functions": {}}
        for name, part in parts.items():
            interface = part.interface
            functions = entry_points(interface)
            path = paths[name]
            path.parent.mkdir(parents=True, exist_ok=True)
            with progress.step(f"Core AI {name} conversion ({len(functions)} functions)"):
                program = coreai_export.convert_part(
                    part.module(), interface.input_names, interface.output_names, functions
                )
            metadata = {
                **part_metadata(job, part, "fp32", self),
                "com.samexport.functions": json.dumps(
                    {n: {k: list(v) for k, v in s.items()} for n, s in functions}
                ),
            }
            with progress.step(f"Core AI {name} save"):
                coreai_export.save(program, path, f"{job.spec.title} {interface.title}", metadata)
            section[name] = {"interface": interface.describe(), **interface.notes}
            section["functions"][name] = [n for n, _ in functions]
        bundle = next(iter(paths.values())).parent
        coreai_export.write_segmenter_bundle(
            bundle,
            bundle.name[: -len(BUNDLE_EXTENSION)],
            {name: path.name for name, path in paths.items()},
            job.spec.family.export_contract(job.shapes),
            {
                "model": job.spec.name,
                "family": job.spec.family.name,
                "parts": {name: part.interface.describe() for name, part in parts.items()},
                "default_function": "main",
            },
        )
        section["bundle"] = bundle.name
        if not options.validate:
            return section, None
        return section, self.check(job, parts, paths)

    def runner(self, path: Path, method: str = "auto", fp32_reference: bool = True):
        from .coreai_runner import CoreAIRunner

        return CoreAIRunner(path, functions_of(path, self.read_metadata(path)))

    def read_metadata(self, path: Path) -> Dict[str, str]:
        from . import coreai_export

        return coreai_export.read_metadata(path)

    def bundled(self, path: Path):
        from . import coreai_export

        if Path(path).is_dir() and Path(path).name.endswith(BUNDLE_EXTENSION):
            return coreai_export.bundle_assets(path)
        return None
