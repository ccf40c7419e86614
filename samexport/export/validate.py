"""`samexport validate`: a numeric verdict for files written by `samexport convert`, of any target.

Each file names its model, part, precision, compression, checkpoint and shapes in its metadata; the same
PyTorch model is rebuilt, the family describes the part again (`parts`), and the file is checked by its
target's runner on the validation cases exactly as `convert` checks it (`check.check_part`). Given an
export manifest, the results are written back into its `validation.<target>` field.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..errors import SamExportError, UsageError, first_line
from ..families.registry import get_spec
from ..fsutil import atomic_write_text
from ..parts import ExportShapes
from ..provenance import sha256
from ..zoo import RandomWeightsWarning, build_model
from .check import PartReport
from .options import MAX_BATCH, MAX_POINTS, PRECISIONS
from .outputs import READABLE_FORMATS, listed_path, manifest_files
from .target import ExportTarget, target_for_file, targets


@dataclass
class FileInfo:
    """What an exported file's metadata says about it."""

    path: Path
    target: ExportTarget
    metadata: Dict[str, str]
    manifest: Optional[Path] = None

    @property
    def model(self) -> str:
        return self.metadata["com.samexport.model"]

    @property
    def part(self) -> str:
        return self.metadata["com.samexport.part"]

    @property
    def precision(self) -> str:
        return self.metadata.get("com.samexport.precision", "fp16")

    @property
    def compress(self) -> str:
        return self.metadata.get("com.samexport.compression", "none")

    @property
    def checkpoint_sha256(self) -> str:
        return self.metadata.get("com.samexport.checkpoint", "random-init")

    def shapes(self) -> ExportShapes:
        return ExportShapes.from_metadata(self.metadata, get_spec(self.model).family.default_input_size)

    @property
    def export_key(self) -> Tuple:
        """The parts of one export share this (their manifest, or folder, and variant)."""
        return (
            str(self.manifest or self.path.parent),
            self.target.name,
            self.precision,
            self.compress,
            self.checkpoint_sha256,
            self.shapes(),
        )


def _counts(value, largest: int) -> bool:
    return (
        isinstance(value, list)
        and 0 < len(value) <= largest
        and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= largest for v in value)
    )


# com.samexport.* metadata that holds JSON, and what a file written by convert has there.
METADATA_JSON = {
    "com.samexport.contract": lambda v: isinstance(v, dict),
    "com.samexport.token_counts": lambda v: _counts(v, MAX_POINTS + 2),
    "com.samexport.batch_sizes": lambda v: _counts(v, MAX_BATCH),
    "com.samexport.prompt_counts": lambda v: _counts(v, MAX_POINTS),
    "com.samexport.input_size": lambda v: _counts(v, 8192) and len(v) == 2,
}


def check_metadata(name: str, meta: Dict[str, str]) -> None:
    """A one-line UsageError unless the file's samexport metadata is what convert writes: a known model and
    a part its family exports, and JSON fields of the right shape and size (nothing to allocate from a
    damaged file)."""
    spec = get_spec(meta["com.samexport.model"])
    from ..parts import PartForm

    parts = spec.family.part_interfaces(
        ExportShapes((1,), (1,), spec.family.default_input_size), PartForm(False, False, True)
    )
    if meta.get("com.samexport.part") not in parts:
        raise UsageError(
            f"{name} has part {meta.get('com.samexport.part')!r} in its metadata, not one of "
            f"{', '.join(parts)}; convert it again"
        )
    if meta.get("com.samexport.precision", "fp16") not in PRECISIONS:
        raise UsageError(f"{name} has precision {meta['com.samexport.precision']!r}; convert it again")
    for key, valid in METADATA_JSON.items():
        if key not in meta:
            continue
        try:
            value = json.loads(meta[key])
        except (ValueError, RecursionError):
            raise UsageError(f"{name}: its {key} metadata is not JSON; convert it again") from None
        if not valid(value):
            raise UsageError(
                f"{name}: its {key} metadata is {meta[key][:60]!r}, not what convert writes; convert it again"
            )


def file_info(path: Path, manifest: Optional[Path] = None) -> FileInfo:
    target = target_for_file(path)
    meta = target.read_metadata(path)
    if "com.samexport.model" not in meta or "com.samexport.part" not in meta:
        raise UsageError(
            f"{Path(path).name} was not written by `samexport convert` (no com.samexport metadata), "
            "so its PyTorch reference is unknown; evaluate it from Python (samexport.export.runners)"
        )
    check_metadata(Path(path).name, meta)
    return FileInfo(Path(path), target, dict(meta), manifest)


def read_manifest_for_validate(path: Path) -> Tuple[Dict, bytes]:
    try:
        raw = path.read_bytes()
        data = json.loads(raw)
    except (OSError, ValueError, RecursionError) as e:
        raise UsageError(
            f"{path} is not an export manifest written by `samexport convert` ({first_line(e)})"
        ) from None
    if isinstance(data, dict) and data.get("format", READABLE_FORMATS[0]) not in READABLE_FORMATS:
        raise UsageError(
            f"{path} has format {str(data.get('format'))[:40]!r}; this samexport reads "
            f"{', '.join(READABLE_FORMATS)} manifests: convert again (or use the samexport that wrote it)"
        )
    files = manifest_files(data) if isinstance(data, dict) else {}
    if not files or not all(
        isinstance(entry, dict) and isinstance(entry.get("path"), str)
        for parts in files.values()
        for entry in parts.values()
    ):
        raise UsageError(
            f"{path} is not an export manifest written by `samexport convert` (no files record); "
            "convert again"
        )
    return data, raw


def bundle_of(path: Path) -> Dict[str, Path]:
    """part -> file of a target's folder of files (a Core AI bundle) that `path` names; empty otherwise."""
    return next((found for t in targets().values() if (found := t.bundled(path))), {})


def inputs_of(paths: List[Path]) -> List[Path]:
    """The exports validate reads for `paths` (a report must never replace one, nor land inside one): the
    manifests and the files they list, bundles and their assets, export files. Anything else among `paths`
    is validate's to refuse."""
    found: List[Path] = []
    for path in map(Path, paths):
        if path.is_file() and path.name.endswith(".json"):
            data, _ = read_manifest_for_validate(path)
            found.append(path)
            found += [
                listed_path(path, e["path"])
                for parts in manifest_files(data).values()
                for e in parts.values()
            ]
        elif bundle_of(path):
            found += [path, *bundle_of(path).values()]
        elif any(t.describes(path) for t in targets().values()):
            found.append(path)
    return found


def expand(paths: List[Path], manifests_read: Optional[Dict[Path, bytes]] = None) -> List[FileInfo]:
    """Files named directly or through an export manifest; `manifests_read` receives each manifest's bytes
    as they were read (results are written back only into that same file)."""
    infos = []
    known = targets()
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise UsageError(f"{path} does not exist; pass an exported file or an export manifest")
        if path.is_file() and path.name.endswith(".json"):
            data, raw = read_manifest_for_validate(path)
            listed = [
                (target, part, listed_path(path, entry["path"]))
                for target, parts in manifest_files(data).items()
                if target in known
                for part, entry in parts.items()
            ]
            if not listed:
                raise UsageError(
                    f"{path} lists no files of a target this samexport knows ({', '.join(known)})"
                )
            gone = next((p for _, _, p in listed if not p.exists()), None)
            if gone is not None:
                raise UsageError(f"{gone.name} is missing (listed by {path.name}); convert again")
            for target, part, file in listed:
                info = file_info(file, manifest=path)
                if (info.target.name, info.part) != (target, part):
                    raise UsageError(
                        f"{path.name} lists {file.name} as the {known[target].title} {part}, but the file is "
                        f"the {info.target.title} {info.part}; convert again"
                    )
                infos.append(info)
            if manifests_read is not None:
                manifests_read[path] = raw
        elif bundle_of(path):
            for part, file in bundle_of(path).items():
                if not file.exists():
                    raise UsageError(
                        f"{file.name} is missing (listed by {path.name}/metadata.json); convert again"
                    )
                info = file_info(file)
                if info.part != part:
                    raise UsageError(
                        f"{path.name} lists {file.name} as its {part}, but it is the {info.part}"
                    )
                infos.append(info)
        else:
            infos.append(file_info(path))
    return infos


def check_checkpoint(info: FileInfo, checkpoint: Optional[Path]) -> None:
    """The file must be compared with the weights it was converted from."""
    recorded = info.checkpoint_sha256
    if checkpoint is None:
        if recorded != "random-init":
            raise UsageError(
                f"{info.path.name} was converted from a checkpoint (sha256 {recorded[:12]}...); "
                "pass that file with --checkpoint"
            )
        return
    if recorded == "random-init":
        raise UsageError(
            f"{info.path.name} was converted without a checkpoint (parity-fill weights); drop --checkpoint"
        )
    actual = sha256(checkpoint)
    if actual != recorded:
        raise UsageError(
            f"--checkpoint {checkpoint} (sha256 {actual[:12]}...) is not the file {info.path.name} was "
            f"converted from (sha256 {recorded[:12]}...); pass that checkpoint"
        )


class _Options:
    """What the shared check step reads of convert's options, from a file's metadata."""

    def __init__(self, info: FileInfo) -> None:
        self.compress = info.compress
        self.precision = info.precision
        self.image_input = "image" if info.target.image_input_of(info.path) else "tensor"


def check_export(model, group: List[FileInfo], method: str) -> Dict[str, PartReport]:
    """path -> report of the files of one export (one target, variant and shapes), as convert checks."""
    from .target import check_with_chain

    first = group[0]
    target, shapes, family = first.target, first.shapes(), model.spec.family
    options = _Options(first)
    reference = family.reference(model, shapes)
    parts = family.export_parts(model, model, shapes, target.form(options), reference)
    present = {info.part: info for info in group}
    chosen = {name: parts[name] for name in present}
    paths = {name: info.path for name, info in present.items()}
    reports = {}
    for name, info in present.items():
        runner = target.runner(info.path, method)
        try:
            reports[str(info.path)] = check_with_chain(
                target, chosen[name], runner, chosen, paths, options, method
            )
        finally:
            runner.close()
    return reports


def validate(
    paths: List[Path], checkpoint: Optional[Path] = None, method: str = "auto", extras: Optional[Dict] = None
) -> Dict[str, PartReport]:
    """file path -> check report; manifests given are updated with the results. `method`: how Core ML
    packages run (auto, coreml, numpy). `extras`: the family's other files (RAP-SAM: `classifier`), as
    `build_model` takes them."""
    from .coreml_runner import METHODS, resolve_method

    manifests_read: Dict[Path, bytes] = {}
    infos = expand(paths, manifests_read)
    known_method = method in METHODS and method != "auto"
    if known_method and not any(method in info.target.methods for info in infos):
        kinds = sorted({info.target.title for info in infos})
        raise UsageError(
            f"--method {method} chooses how Core ML packages run; these files are {', '.join(kinds)}: drop "
            "--method"
        )
    method = resolve_method(method)
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise UsageError(f"--checkpoint {checkpoint} does not exist; pass the official checkpoint file")
    for info in infos:
        check_checkpoint(info, checkpoint)
    reports: Dict[str, PartReport] = {}
    for model_name in dict.fromkeys(info.model for info in infos):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RandomWeightsWarning)
            model = build_model(model_name, checkpoint, **(extras or {}))
        mine = [i for i in infos if i.model == model_name]
        for key in dict.fromkeys(i.export_key for i in mine):
            reports.update(check_export(model, [i for i in mine if i.export_key == key], method))
    for manifest in dict.fromkeys(info.manifest for info in infos if info.manifest):
        mine = [info for info in infos if info.manifest == manifest]
        update_manifest(
            manifest,
            {
                target: {i.part: reports[str(i.path)] for i in mine if i.target.name == target}
                for target in dict.fromkeys(i.target.name for i in mine)
            },
            manifests_read[manifest],
        )
    return reports


def update_manifest(manifest: Path, by_target: Dict[str, Dict[str, PartReport]], as_read: bytes) -> None:
    """Write the results into the manifest's validation.<target>, replacing the file atomically, if it is
    still the file validate read (`as_read`): under the folder lock `convert` switches files under, so a
    verdict computed against one export never lands in the manifest of another that replaced it meanwhile."""
    from .outputs import folder_lock, upgrade_manifest

    with folder_lock(manifest.parent):
        try:
            current = manifest.read_bytes()
        except OSError:
            current = None
        if current != as_read:
            raise UsageError(
                f"{manifest} changed while validate ran (another samexport convert?); the results were "
                "computed against the files it replaced, so they were not written: run validate again"
            )
        data = upgrade_manifest(json.loads(current))
        for target, parts in by_target.items():
            data.setdefault("validation", {})[target] = {
                "reference": "unfused PyTorch model (samexport validate)",
                **{part: report.to_json() for part, report in parts.items()},
                "passed": all(r.passed for r in parts.values()),
            }
        try:
            atomic_write_text(manifest, json.dumps(data, indent=2) + "\n")
        except OSError as e:
            why = e.strerror or e
            raise UsageError(f"cannot update {manifest} ({why}); make its folder writable") from None


def raise_if_any_failed(reports: Dict[str, PartReport]) -> None:
    failed = [(path, r) for path, r in reports.items() if not r.passed]
    if failed:
        path, report = failed[0]
        more = f" ({len(failed) - 1} more files failed)" if len(failed) > 1 else ""
        raise SamExportError(f"{Path(path).name}: {report.all_failures[0]}{more}")
