"""`samexport validate`: a numeric verdict for Core ML packages written by `samexport convert`.

Each package names its model, part, precision, compression and checkpoint in its metadata; the
same PyTorch model is rebuilt and both are run on the validation image and prompts. Given an
export manifest, the results are written back into its `validation.coreml` field.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from ..coreml_package import CoreMLPackage
from ..errors import SamExportError, UsageError, first_line
from ..fsutil import atomic_write_text
from ..provenance import sha256
from ..registry import get_spec
from ..zoo import RandomWeightsWarning, build_model
from . import coreml_check
from .options import MAX_BATCH, MAX_POINTS, PRECISIONS
from .outputs import MANIFEST_FORMAT
from .quality import floor_text
from .target import export_layout

PACKAGE_KEYS = {"coreml_encoder": "encoder", "coreml_decoder": "decoder", "coreml_panoptic": "panoptic"}


@dataclass
class PackageInfo:
    """What a package's metadata says about it: model, part, variant, weights, decoder token counts."""

    package: CoreMLPackage
    model: str
    part: str
    precision: str
    compress: str
    checkpoint_sha256: str
    image_input: bool
    token_counts: List[int]
    batch_sizes: List[int]
    metadata: Dict[str, str]
    manifest: Optional[Path] = None

    @property
    def path(self) -> Path:
        return self.package.path

    @property
    def pair_key(self) -> tuple:
        """Encoder and decoder of one export share this (their manifest, or folder and variant)."""
        return (str(self.manifest or self.path.parent), self.precision, self.compress, self.checkpoint_sha256)


def _counts(value, largest: int) -> bool:
    return (
        isinstance(value, list)
        and 0 < len(value) <= largest
        and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= largest for v in value)
    )


# com.samexport.* metadata that holds JSON, and what a package written by convert has there.
METADATA_JSON = {
    "com.samexport.contract": lambda v: isinstance(v, dict),
    "com.samexport.token_counts": lambda v: _counts(v, MAX_POINTS + 2),
    "com.samexport.batch_sizes": lambda v: _counts(v, MAX_BATCH),
    "com.samexport.prompt_counts": lambda v: _counts(v, MAX_POINTS),
    "com.samexport.input_size": lambda v: _counts(v, 8192) and len(v) == 2,
}
PARTS = ("encoder", "decoder", "panoptic")


def check_metadata(name: str, meta: Dict[str, str]) -> None:
    """A one-line UsageError unless the package's samexport metadata is what convert writes: a known model
    and part, and JSON fields of the right shape and size (nothing to allocate from a damaged package)."""
    if meta.get("com.samexport.part") not in PARTS:
        raise UsageError(
            f"{name} has part {meta.get('com.samexport.part')!r} in its metadata, not one of "
            f"{', '.join(PARTS)}; convert it again"
        )
    get_spec(meta["com.samexport.model"])
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


def package_info(path: Path, manifest: Optional[Path] = None) -> PackageInfo:
    package = CoreMLPackage(path)
    meta = package.metadata
    if "com.samexport.model" not in meta or "com.samexport.part" not in meta:
        raise UsageError(
            f"{package.path.name} was not written by `samexport convert` (no com.samexport metadata), "
            "so its PyTorch reference is unknown; evaluate it from Python with samexport.mileval.evaluate"
        )
    check_metadata(package.path.name, meta)
    return PackageInfo(
        package=package,
        model=meta["com.samexport.model"],
        part=meta["com.samexport.part"],
        precision=meta.get("com.samexport.precision", "fp16"),
        compress=meta.get("com.samexport.compression", "none"),
        checkpoint_sha256=meta.get("com.samexport.checkpoint", "random-init"),
        image_input=any(f["name"] == "image" and f["kind"] == "image" for f in package.io["inputs"]),
        token_counts=json.loads(meta.get("com.samexport.token_counts", "[]")),
        batch_sizes=json.loads(meta.get("com.samexport.batch_sizes", "[1]")),
        metadata=dict(meta),
        manifest=manifest,
    )


def expand(paths: List[Path], manifests_read: Optional[Dict[Path, bytes]] = None) -> List[PackageInfo]:
    """Packages named directly or through an export manifest; `manifests_read` receives each manifest's
    bytes as they were read (results are written back only into that same file)."""
    infos = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise UsageError(f"{path} does not exist; pass an .mlpackage or an export manifest")
        if path.is_file() and path.name.endswith(".json"):
            try:
                raw = path.read_bytes()
                data = json.loads(raw)
            except (OSError, ValueError, RecursionError) as e:
                raise UsageError(
                    f"{path} is not an export manifest written by `samexport convert` ({first_line(e)})"
                ) from None
            if isinstance(data, dict) and data.get("format", MANIFEST_FORMAT) != MANIFEST_FORMAT:
                raise UsageError(
                    f"{path} has format {str(data.get('format'))[:40]!r}; this samexport reads "
                    f"{MANIFEST_FORMAT} manifests: convert again (or use the samexport that wrote it)"
                )
            files = data.get("files") if isinstance(data, dict) else None
            if not isinstance(files, dict) or not all(
                isinstance(entry, dict) and isinstance(entry.get("path"), str) for entry in files.values()
            ):
                raise UsageError(
                    f"{path} is not an export manifest written by `samexport convert` (no files "
                    "record); convert again"
                )
            packages = [path.parent / files[key]["path"] for key in PACKAGE_KEYS if key in files]
            if not packages:
                raise UsageError(f"{path} lists no Core ML packages (ONNX exports are validated by convert)")
            infos += [package_info(p, manifest=path) for p in packages]
            if manifests_read is not None:
                manifests_read[path] = raw
        else:
            infos.append(package_info(path))
    return infos


def check_checkpoint(info: PackageInfo, checkpoint: Optional[Path]) -> None:
    """The package must be compared with the weights it was converted from."""
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


def validate(
    paths: List[Path], checkpoint: Optional[Path] = None, method: str = "auto", extras: Optional[Dict] = None
) -> Dict[str, Dict]:
    """package path -> check report; manifests given are updated with the results. `extras`: the family's
    other files (RAP-SAM: `classifier`), as `build_model` takes them."""
    manifests_read: Dict[Path, bytes] = {}
    infos = expand(paths, manifests_read)
    method = coreml_check.resolve_method(method)
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise UsageError(f"--checkpoint {checkpoint} does not exist; pass the official checkpoint file")
    for info in infos:
        check_checkpoint(info, checkpoint)
    reports: Dict[str, Dict] = {}
    for model_name in dict.fromkeys(info.model for info in infos):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RandomWeightsWarning)
            model = build_model(model_name, checkpoint, **(extras or {}))
        layout = export_layout(model.spec.family.export_layout)
        reports.update(layout.validate(model, [i for i in infos if i.model == model_name], method))
    for manifest in dict.fromkeys(info.manifest for info in infos if info.manifest):
        update_manifest(
            manifest,
            {info.part: reports[str(info.path)] for info in infos if info.manifest == manifest},
            manifests_read[manifest],
        )
    return reports


def update_manifest(manifest: Path, parts: Dict[str, Dict], as_read: bytes) -> None:
    """Write the results into the manifest's validation.coreml, replacing the file atomically, if it is still
    the file validate read (`as_read`): under the folder lock `convert` switches files under, so a verdict
    computed against one export never lands in the manifest of another that replaced it meanwhile."""
    from .outputs import folder_lock

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
        data = json.loads(current)
        coreml = {**parts, "passed": all(r["passed"] for r in parts.values())}
        data.setdefault("validation", {})["coreml"] = coreml
        try:
            atomic_write_text(manifest, json.dumps(data, indent=2) + "\n")
        except OSError as e:
            why = e.strerror or e
            raise UsageError(f"cannot update {manifest} ({why}); make its folder writable") from None


def render(reports: Dict[str, Dict]) -> str:
    """A text table per package: every output and prompt against PyTorch."""
    lines = []
    for path, report in reports.items():
        lines.append(f"{Path(path).name}: {'PASS' if report['passed'] else 'FAIL'}  ({report['method']})")
        if "floors" in report:  # one floor per output (check_cases reports)
            for output, floor in report["floors"].items():
                lines.append(f"  floor for {output}: {floor_text(floor)}")
        else:
            lines.append(f"  floor: {floor_text(report['floor'])}")
        lines.append(
            f"  {'output':<38}{'tokens':>7}{'PSNR dB':>9}{'max err/max|ref|':>18}{'cosine':>10}"
            f"{'NaN/Inf':>9}{'fp32-eval PSNR':>16}"
        )
        if "imageEmbeddings" in report:
            rows = [("imageEmbeddings", "", report["imageEmbeddings"])]
        elif "floors" in report:
            rows = [
                (f"{out} '{name}'", "", result)
                for name, outputs in report["cases"].items()
                for out, result in outputs.items()
                if out != "evaluation"
            ]
        else:
            rows = [
                (f"{out} '{name}'", case["tokens"], case[out])
                for name, case in report["cases"].items()
                for out in ("lowResMasks", "iouScores")
            ]
        for label, tokens, r in rows:
            fp32 = f"{r['fp32_evaluation']['psnr_db']:.1f}" if "fp32_evaluation" in r else "-"
            lines.append(
                f"  {label[:38]:<38}{tokens!s:>7}{r['psnr_db']:>9.1f}{r['rel']:>18.2e}{r['cosine']:>10.6f}"
                f"{r['non_finite']:>9}{fp32:>16}"
            )
        evaluation = report.get("evaluation")
        if evaluation:
            peak = evaluation.get("fp16_peak") or {}
            peak_text = (
                f"; largest fp16 value {peak['max_abs']:.4g} ({100 * peak['fraction_of_fp16_max']:.2f}% of "
                f"65504) at {peak['type']} op '{peak['op']}'"
                if peak
                else ""
            )
            lines.append(f"  evaluated in {evaluation['seconds']:.1f} s{peak_text}")
        masks = report.get("masks")
        if masks:
            ious = ", ".join(f"'{name}' {iou:.3f}" for name, iou in masks["per_prompt"].items())
            lines.append(f"  mask IoU end to end (encoder + decoder packages vs PyTorch): {ious}")
        for failure in report["failures"]:
            lines.append(f"  failed: {failure}")
        lines.append("")
    return "\n".join(lines)


def raise_if_any_failed(reports: Dict[str, Dict]) -> None:
    failed = [(path, r) for path, r in reports.items() if not r["passed"]]
    if failed:
        path, report = failed[0]
        more = f" ({len(failed) - 1} more packages failed)" if len(failed) > 1 else ""
        raise SamExportError(f"{Path(path).name}: {report['failures'][0]}{more}")
