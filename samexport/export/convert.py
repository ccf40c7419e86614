"""`samexport convert`: build, reparameterize, export to each chosen target, check, describe — all or nothing.

Every artifact is written into a work folder inside the output folder and moved into place only
after every export of the run has been written and checked (see `outputs`). The family describes the
parts (`samexport.parts`), each target lowers them (`target`); this module only orchestrates.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from pathlib import Path
from typing import Dict

import torch

from ..console import Progress
from ..errors import SamExportError, UsageError
from ..families.registry import get_spec
from ..fsutil import is_disk_full, tree_bytes
from ..provenance import machine, sha256, versions
from ..reparam import reparameterize_model
from ..zoo import build_model_noting
from .compare import compare
from .compression import compression
from .options import ConvertOptions, artifact_names
from .outputs import MANIFEST_FORMAT, OutputFolder
from .target import ExportJob, targets


class Converter:
    """One `samexport convert` run: options in, files and a manifest out (or nothing)."""

    def __init__(self, options: ConvertOptions, progress: Progress) -> None:
        self.options = options
        self.progress = progress
        self.spec = get_spec(options.encoder)
        self.names = artifact_names(self.spec, options)
        self.family = self.spec.family
        self.family.check_convert_options(self.spec, options)
        self.shapes = self.family.export_shapes(options)
        self.manifest: Dict = {}

    def run(self) -> Dict:
        spec, progress, options = self.spec, self.progress, self.options
        output = OutputFolder(
            options.output_dir,
            self.names[("manifest", "")],
            # a target may write its parts into one folder (Core AI's bundle): that folder is the output
            list(dict.fromkeys(Path(n).parts[0] for key, n in self.names.items() if key != ("manifest", ""))),
            options.force,
        )
        output.check()
        chosen = {name: targets()[name] for name in options.targets}
        for target in chosen.values():
            target.check_options(spec, options)
        self.refuse_a_full_disk()
        progress.say(f"samexport convert {spec.name} -> {', '.join(options.targets)} in {options.output_dir}")
        for note in options.notes:
            progress.say(f"note: {note}")
        with progress.step("build model"):
            model, notes = build_model_noting(spec.name, options.checkpoint, **options.extras)
            fused = reparameterize_model(model)
        for note in notes:
            progress.say(f"warning: {note}")
        self.checkpoint = checkpoint_record(options)
        work = output.open()
        succeeded = False
        try:
            with progress.step("reference outputs (PyTorch, official model)"):
                reference = self.family.reference(model, self.shapes)
            job = ExportJob(
                spec=spec,
                options=options,
                model=model,
                fused=fused,
                shapes=self.shapes,
                reference=reference,
                checkpoint_sha256=self.checkpoint["sha256"],
                progress=progress,
            )
            self.manifest = self.base_manifest(self.fusion_error(job))
            for name, target in chosen.items():
                paths = {part: work / file for part, file in target.file_names(spec, options).items()}
                try:
                    section, report = target.export(job, paths)
                except SamExportError as e:
                    if len(chosen) == 1 or isinstance(e, UsageError):
                        raise
                    others = ",".join(n for n in chosen if n != name)
                    raise type(e)(f"{e} (--target {others} writes the other targets)") from None
                self.manifest["files"][name] = {
                    part: {"path": path.relative_to(work).as_posix(), "bytes": tree_bytes(path)}
                    for part, path in paths.items()
                }
                self.manifest[name] = section
                self.manifest["validation"][name] = (
                    report.to_json() if report else {"skipped": "--no-validate"}
                )
            self.manifest["timings_s"] = progress.timings
            self.manifest = output.publish(self.manifest)
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

    def refuse_a_full_disk(self) -> None:
        """A one-line UsageError before any work when the disk holding the output has less free space than the
        exports need while they are written: Apple's Core AI writer aborts the process on a full disk
        (LLVM's "IO failure on output stream"), past any cleanup."""
        import shutil

        folder = Path(self.options.output_dir).absolute()
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        free_mb = shutil.disk_usage(folder).free / 1e6
        needed_mb = self.size_estimate_mb()
        if free_mb < needed_mb:
            raise UsageError(
                f"{free_mb:.0f} MB free on the disk holding {self.options.output_dir}; these exports need "
                f"about {needed_mb:.0f} MB while they are written: free space or choose another --output-dir"
            )

    def size_estimate_mb(self) -> float:
        """Disk a run needs while it writes, an upper bound: every chosen target's weights at their storage
        width (from the parameter counts), twice, for the temporary copies written before the final files
        (coremltools saves each package in the work folder's tmp first)."""
        from ..info import model_params

        params = model_params(self.spec.name)["total"]
        known = targets()
        return round(
            2 * sum(params * known[t].bytes_per_weight(self.options) for t in self.options.targets) / 1e6, 1
        )

    def fusion_error(self, job: ExportJob) -> Dict:
        """The reparameterized encoder against the official one on the validation tensor (PyTorch both)."""
        from ..parts import PartForm
        from ..runtime import TorchRunner

        fused = job.fused
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
        encoder = job.parts(PartForm(packed_prompts=False, image_input=False, dynamic=False))["encoder"]
        with self.progress.step("fused encoder check"):
            name, feeds, expected = encoder.cases(None)[0]
            interface = encoder.interface
            outputs, _ = TorchRunner(encoder.module(), interface.output_names, interface.input_names).run(
                feeds
            )
        output = encoder.interface.output_names[0]
        result["encoder_error_vs_unfused"] = compare(outputs[output], expected[output])
        return result

    def base_manifest(self, fusion: Dict) -> Dict:
        spec, options = self.spec, self.options
        checkpoint = self.checkpoint
        opts = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()}
        return {
            "format": MANIFEST_FORMAT,
            "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "model": {
                "name": spec.name,
                "title": spec.title,
                "family": spec.family.name,
                "artifact_stem": spec.artifact_stem,
                "variant": {"precision": options.precision, "compress": options.compress},
                "compression": compression(options.compress).describe(),
            },
            "checkpoint": checkpoint,
            "versions": versions(),
            "machine": machine(),
            "options": opts,
            "reparameterization": fusion,
            "input_contract": self.family.export_contract(self.shapes),
            "decoder_prompt": {"points": list(options.points), **self.family.prompt_manifest(self.shapes)},
            "files": {},
            "validation": {},
        }


def checkpoint_record(options: ConvertOptions) -> Dict:
    """The checkpoint's path and sha256, or the fill's marker."""
    if not options.checkpoint:
        return {"path": None, "sha256": "random-init"}
    return {"path": str(options.checkpoint), "sha256": sha256(options.checkpoint)}


def convert(options: ConvertOptions, quiet: bool = False) -> Dict:
    return Converter(options, Progress(quiet=quiet)).run()
