"""`samexport convert`: build, reparameterize, export to each chosen target, check, describe — all or nothing.

Every artifact is written into a temporary folder inside the output folder and moved into
place only after every export of the run has been written and checked. The targets themselves
live in `onnx_target` and `coreml_target`; this module only orchestrates.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Dict

import torch

from ..console import Progress
from ..errors import UsageError
from ..fsutil import tree_bytes
from ..provenance import machine, sha256, versions
from ..registry import get_spec
from ..reparam import reparameterize_model
from ..zoo import RandomWeightsWarning, build_model
from .compare import compare
from .options import ConvertOptions, artifact_names
from .reference import Reference, make_reference
from .target import ExportJob, targets


class Converter:
    """One `samexport convert` run: options in, files and a manifest out (or nothing)."""

    def __init__(self, options: ConvertOptions, progress: Progress) -> None:
        self.options = options
        self.progress = progress
        self.spec = get_spec(options.encoder)
        self.names = artifact_names(self.spec, options)
        self.signature = self.spec.family.decoder_signature(self.spec.family.token_counts(options.points))
        self.manifest: Dict = {}

    def check_outputs(self) -> None:
        out = self.options.output_dir
        if out.exists() and not out.is_dir():
            raise UsageError(f"--output-dir {out} is a file; pass a folder")
        existing = [n for n in self.names.values() if (out / n).exists()]
        if existing and not self.options.force:
            raise UsageError(
                f"{out / existing[0]} already exists; pass --force to replace it (or --output-dir elsewhere)"
            )

    def make_workdir(self) -> Path:
        out = self.options.output_dir
        try:
            out.mkdir(parents=True, exist_ok=True)
            return Path(tempfile.mkdtemp(prefix=".samexport-", dir=out))
        except OSError as e:
            raise UsageError(
                f"cannot write to --output-dir {out} ({e.strerror or e}); choose a writable folder"
            ) from None

    def run(self) -> Dict:
        self.check_outputs()
        chosen = {name: targets()[name] for name in self.options.targets}
        for target in chosen.values():
            target.check_options(self.spec, self.options)
        spec, progress = self.spec, self.progress
        progress.say(
            f"samexport convert {spec.name} -> {', '.join(self.options.targets)} in {self.options.output_dir}"
        )
        with progress.step("build model"), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RandomWeightsWarning)
            model = build_model(spec.name, self.options.checkpoint)
            fused = reparameterize_model(model)
        for w in caught:
            progress.say(f"warning: {w.message}")
        work = self.make_workdir()
        try:
            with progress.step("reference outputs (PyTorch, official model)"):
                reference = make_reference(model)
            self.manifest = self.base_manifest(self.fusion_error(fused, reference))
            job = ExportJob(
                spec=spec,
                options=self.options,
                model=model,
                fused=fused,
                reference=reference,
                signature=self.signature,
                checkpoint_sha256=self.manifest["checkpoint"]["sha256"],
                progress=progress,
            )
            for name, target in chosen.items():
                paths = {key: work / file for key, file in target.artifact_names(spec, self.options).items()}
                section, validation = target.export(job, paths)
                for key, path in paths.items():
                    self.manifest["files"][key] = {"path": path.name, "bytes": tree_bytes(path)}
                self.manifest[name] = section
                self.manifest["validation"][name] = validation
            self.manifest["timings_s"] = progress.timings
            (work / self.names["manifest"]).write_text(json.dumps(self.manifest, indent=2) + "\n")
            self.move_into_place(work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return self.manifest

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
            "format": "samexport.export/1",
            "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "model": {
                "name": spec.name,
                "title": spec.title,
                "style": spec.family.name,
                "swift_name": spec.swift_name,
                "variant": {"precision": options.precision, "compress": options.compress},
            },
            "checkpoint": checkpoint,
            "versions": versions(),
            "machine": machine(),
            "options": opts,
            "reparameterization": fusion,
            "input_contract": spec.family.input_contract(),
            "decoder_prompt": {
                "points": list(options.points),
                "token_counts": list(self.signature.token_counts),
            },
            "files": {},
            "validation": {},
        }

    def move_into_place(self, work: Path) -> None:
        """Artifacts first, the manifest last: a manifest never describes files that are not there."""
        out = self.options.output_dir
        names = [n for key, n in self.names.items() if key != "manifest"] + [self.names["manifest"]]
        for name in names:
            target = out / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            os.replace(work / name, target)
            self.progress.say(f"  wrote {target}")


def convert(options: ConvertOptions, quiet: bool = False) -> Dict:
    return Converter(options, Progress(quiet=quiet)).run()
