"""A predictor over exported files: any target's encoder and decoder, run by that target's runner.

It takes an export manifest written by `samexport convert`, so the family, its preprocessing, the part
interfaces and the decoder's batch sizes come from what was exported, not from guesses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

from ..errors import UsageError
from ..families.registry import get_spec
from ..parts import ExportShapes
from ..predictor import SessionPredictor
from ..runtime import Session
from .outputs import READABLE_FORMATS, listed_path, manifest_files, upgrade_manifest
from .target import targets

NUMPY_SLOWNESS = (
    "the NumPy evaluator decodes about 7x slower than onnxruntime (18.0 s vs 2.4 s per 64 "
    "prompts, MobileSAM on 2 cores: benchmarks/results/linux-x86_64-2core/"
    "decode_backends_tinyvit.json); --backend onnx is the faster way to see everything mode here"
)


def read_manifest(path: Path) -> Dict:
    """An export manifest of any readable format, in this samexport's layout (`outputs.upgrade_manifest`)."""
    try:
        manifest = json.loads(Path(path).read_text())
        manifest["files"], manifest["model"]["name"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
        raise UsageError(
            f"{path} is not a readable samexport export manifest ({e}); run samexport convert"
        ) from None
    if manifest.get("format", READABLE_FORMATS[0]) not in READABLE_FORMATS:
        raise UsageError(
            f"{path} has format {str(manifest.get('format'))[:40]!r}; this samexport reads "
            f"{', '.join(READABLE_FORMATS)} manifests: convert again (or use the samexport that wrote it)"
        )
    return upgrade_manifest(manifest)


def manifest_file(manifest_path: Path, manifest: Dict, target: str, part: str) -> Path:
    entry = manifest_files(manifest).get(target, {}).get(part)
    path = listed_path(Path(manifest_path), str((entry or {}).get("path", "")))
    if not entry or not path.exists():
        raise UsageError(
            f"{manifest_path} lists no existing {target} {part} file; run samexport convert again"
        )
    if not targets()[target].describes(path):
        raise UsageError(
            f"{manifest_path} lists {path.name} as its {targets()[target].title} {part}, which is no "
            f"{targets()[target].title} file; run samexport convert again"
        )
    return path


def open_session(manifest_path: Path, target: str, method: str = "auto") -> Session:
    """A session over every part a manifest lists for `target`, each run by that target's runner; the
    interfaces and the input size come from what was exported. `method` chooses where a target runs in
    several ways (Core ML: prediction on a Mac, or the NumPy evaluation of the saved programs anywhere)."""
    manifest = read_manifest(manifest_path)
    spec = get_spec(manifest["model"]["name"])
    if target not in targets():
        raise UsageError(f"unknown target {target!r}; choose one of: {', '.join(targets())}")
    chosen = targets()[target]
    listed = manifest_files(manifest).get(target, {})
    if not listed:
        written = ", ".join(t for t, parts in manifest_files(manifest).items() if parts) or "none"
        raise UsageError(
            f"{manifest_path} lists no {chosen.title} files (it has: {written}); "
            f"convert with --target {target}"
        )
    paths = {part: manifest_file(manifest_path, manifest, target, part) for part in listed}
    meta = chosen.read_metadata(next(iter(paths.values())))
    if "com.samexport.token_counts" not in meta:  # samexport 0.x wrote no ONNX metadata
        prompt = manifest.get("decoder_prompt", {})
        meta = {"com.samexport.token_counts": json.dumps(prompt.get("token_counts", [1]))}
    shapes = ExportShapes.from_metadata(meta, spec.family.default_input_size)
    form = chosen.form(_Options(manifest.get("options", {}).get("image_input", "image")))
    interfaces = spec.family.part_interfaces(shapes, form)
    runners = {}
    try:
        for part, path in paths.items():
            runners[part] = chosen.runner(path, method, fp32_reference=False)
    except BaseException:
        for runner in runners.values():
            runner.close()
        raise
    return Session(
        target, spec.name, interfaces, runners, shapes.input_size, str(manifest_path), shapes, form
    )


class ExportPredictor(SessionPredictor):
    """An export's encoder and decoder (`open_session` of the manifest on `target`)."""

    def __init__(self, manifest_path: Path, target: str, method: str = "auto") -> None:
        from .coreml_runner import NumpyRunner

        super().__init__(open_session(manifest_path, target, method), name=target)
        self.target = targets()[target]
        if isinstance(self.decoder, NumpyRunner):
            self.name = f"{target} (NumPy evaluation)"
            self.slowness = NUMPY_SLOWNESS


class _Options:
    """The convert options a target's `form` reads, from a manifest's record."""

    def __init__(self, image_input: str) -> None:
        self.image_input = image_input
