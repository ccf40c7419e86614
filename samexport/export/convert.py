"""`samexport convert`: build, reparameterize, export to each chosen target, check, describe — all or nothing.

Every artifact is written into a work folder inside the output folder and moved into place only
after every export of the run has been written and checked (see `outputs`). The targets live in
`onnx_target` and `coreml_target`; this module only orchestrates.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from pathlib import Path
from typing import Dict

import torch

from ..console import Progress
from ..errors import UsageError
from ..fsutil import is_disk_full, tree_bytes
from ..provenance import machine, sha256, versions
from ..registry import get_spec
from ..reparam import reparameterize_model
from ..zoo import build_model_noting
from .compare import compare
from .compression import compression
from .options import ConvertOptions, artifact_names
from .outputs import MANIFEST_FORMAT, OutputFolder
from .reference import Reference
from .target import ExportJob, export_layout, targets


class Converter:
    """One `samexport convert` run: options in, files and a manifest out (or nothing)."""

    def __init__(self, options: ConvertOptions, progress: Progress) -> None:
        self.options = options
        self.progress = progress
        self.spec = get_spec(options.encoder)
        self.names = artifact_names(self.spec, options)
        self.layout = export_layout(self.spec.family.export_layout)
        self.layout.check_options(self.spec, options)
        self.signature = self.layout.signature(self.spec, options)
        self.manifest: Dict = {}

    def run(self) -> Dict:
        spec, progress, options = self.spec, self.progress, self.options
        output = OutputFolder(options.output_dir, self.names, options.force)
        output.check()
        chosen = {name: targets(self.layout.name)[name] for name in options.targets}
        for target in chosen.values():
            target.check_options(spec, options)
        progress.say(f"samexport convert {spec.name} -> {', '.join(options.targets)} in {options.output_dir}")
        for note in options.notes:
            progress.say(f"note: {note}")
        with progress.step("build model"):
            model, notes = build_model_noting(spec.name, options.checkpoint, **options.extras)
            fused = reparameterize_model(model)
        for note in notes:
            progress.say(f"warning: {note}")
        work = output.open()
        succeeded = False
        try:
            with progress.step("reference outputs (PyTorch, official model)"):
                reference = self.layout.reference(model, self.signature)
            self.manifest = self.base_manifest(self.fusion_error(fused, reference))
            job = ExportJob(
                spec=spec,
                options=options,
                model=model,
                fused=fused,
                reference=reference,
                signature=self.signature,
                checkpoint_sha256=self.manifest["checkpoint"]["sha256"],
                progress=progress,
            )
            own_keys = []
            for name, target in chosen.items():
                paths = {key: work / file for key, file in target.artifact_names(spec, options).items()}
                section, validation = target.export(job, paths)
                for key, path in paths.items():
                    self.manifest["files"][key] = {"path": path.name, "bytes": tree_bytes(path)}
                    own_keys.append(key)
                self.manifest[name] = section
                self.manifest["validation"][name] = validation
            self.manifest["timings_s"] = progress.timings
            self.manifest = output.publish(self.manifest, own_keys)
            for file in self.names.values():
                progress.say(f"  wrote {options.output_dir / file}")
            succeeded = True
        except Exception as e:  # coremltools' blob writer reports a full disk as a RuntimeError, too
            if not is_disk_full(e):
                raise
            raise UsageError(
                f"no space left on the disk holding {options.output_dir} after writing "
                f"{output.written_mb()} MB; these exports need about {self.size_estimate_mb()} MB free "
                "while they are written (more while --force replaces earlier files): free space or choose "
                "another --output-dir; nothing was written"
            ) from None
        finally:
            output.close(succeeded)
        return self.manifest

    def size_estimate_mb(self) -> float:
        """Disk a run needs while it writes, an upper bound: every chosen target's weights at their storage
        width (from the parameter counts), twice, for the temporary copies written before the final files
        (coremltools saves each package in the work folder's tmp first)."""
        from ..info import model_params

        params = model_params(self.spec.name)["total"]
        mode = compression(self.options.compress)
        width = 4 if not mode.lossy and self.options.precision == "fp32" else mode.bytes_per_weight
        per_target = {"onnx": 1 if mode.weights == "int8" else 4, "coreml": width}
        return round(2 * sum(params * per_target.get(t, 4) for t in self.options.targets) / 1e6, 1)

    def fusion_error(self, fused, reference: Reference) -> Dict:
        count = getattr(fused, "num_fused_modules", 0)
        result = {
            "fused_modules": count,
            "batchnorm_left": sum(
                isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in fused.modules()
            ),
        }
        if not count:
            result["encoder_error_vs_unfused"] = "not measured: no module was replaced"
            return result
        with self.progress.step("fused encoder check"), torch.no_grad():
            out = fused.image_encoder(reference.tensor)
        result["encoder_error_vs_unfused"] = compare(out.numpy(), reference.embeddings.numpy())
        return result

    def base_manifest(self, fusion: Dict) -> Dict:
        spec, options = self.spec, self.options
        checkpoint = (
            {"path": str(options.checkpoint), "sha256": sha256(options.checkpoint)}
            if options.checkpoint
            else {"path": None, "sha256": "random-init"}
        )
        opts = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()}
        return {
            "format": MANIFEST_FORMAT,
            "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "model": {
                "name": spec.name,
                "title": spec.title,
                "style": spec.family.name,
                "swift_name": spec.swift_name,
                "variant": {"precision": options.precision, "compress": options.compress},
                "compression": compression(options.compress).describe(),
            },
            "checkpoint": checkpoint,
            "versions": versions(),
            "machine": machine(),
            "options": opts,
            "reparameterization": fusion,
            "input_contract": self.layout.input_contract(spec, self.signature),
            "decoder_prompt": self.layout.prompt_manifest(options, self.signature),
            "files": {},
            "validation": {},
        }


def convert(options: ConvertOptions, quiet: bool = False) -> Dict:
    return Converter(options, Progress(quiet=quiet)).run()
