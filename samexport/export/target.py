"""The export-target interface and registry; a target lowers any part a family describes.

A target (`onnx`, `coreml`, ...) is one module with an `ExportTarget` subclass plus one line in
`TARGET_MODULES`. It declares the part form it wants (`parts.PartForm` traits), the compression modes
it implements, its file extension and variant suffix, how it lowers a part, and the runner that runs
its files; checking is shared (`check.check_part`). File names come from `artifact_name` only.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Dict, Optional, Tuple

from ..errors import UsageError
from ..fsutil import MANIFEST_SUFFIX
from ..parts import ExportShapes, Part, PartForm
from .compression import compression

if TYPE_CHECKING:  # kept out of the import so that option parsing does not load torch
    from torch import nn

    from ..console import Progress
    from ..families.registry import ModelSpec
    from ..runtime import Runner
    from .check import TargetReport

TARGET_MODULES = (
    "samexport.export.onnx_target",
    "samexport.export.coreml_target",
    "samexport.export.coreai_target",
    "samexport.export.litert_target",
)


def artifact_name(stem: str, part: str, variant: str, extension: str) -> str:
    """The one file-name rule: `RepViTSAM` + `Decoder` + `Int8` + `.onnx`."""
    return f"{stem}{part[:1].upper()}{part[1:]}{variant}{extension}"


def manifest_name(stem: str, options) -> str:
    return f"{stem}{options.variant_suffix}{MANIFEST_SUFFIX}"


@dataclass
class ExportJob:
    """Everything a target needs for one model: the official model (the reference computation), its
    reparameterized copy (what is exported), the shapes, the shared reference and where to report."""

    spec: "ModelSpec"
    options: object  # ConvertOptions
    model: "nn.Module"
    fused: "nn.Module"
    shapes: ExportShapes
    reference: object  # the family's reference (`Family.reference`)
    checkpoint_sha256: str
    progress: "Progress"
    # the simulated float16 device's report per part (`check_float16_device`), shared by every target
    float16_device: Dict[str, object] = field(default_factory=dict)

    def parts(self, form: PartForm) -> Dict[str, Part]:
        """The parts this run writes, in the form a target asks for."""
        family = self.spec.family
        every = family.export_parts(self.model, self.fused, self.shapes, form, self.reference)
        return {name: every[name] for name in family.exported_parts(self.options)}


class ExportTarget(ABC):
    """Writes any part in one format; the runner it names runs those files for every check."""

    name: ClassVar[str]  # --target value, manifest section
    title: ClassVar[str]
    extension: ClassVar[str]
    compressions: ClassVar[Tuple[str, ...]]  # --compress values this target implements
    packed_prompts: ClassVar[bool]
    dynamic: ClassVar[bool]  # its runtime takes any prompt-set and token count
    decoder_shapes: ClassVar[Tuple[str, ...]] = ("enumerated",)  # --decoder-shapes values it writes

    def settle_options(self, options) -> Tuple[str, ...]:
        """Adjust options this target needs changed (said before any work, as notes)."""
        return ()

    def form(self, options) -> PartForm:
        return PartForm(self.packed_prompts, self.image_input(options), self.dynamic)

    def image_input(self, options) -> bool:
        return False

    precisions: ClassVar[Tuple[str, ...]] = ("fp16", "fp32")  # what --precision may choose; one: fixed
    # the target-specific options it honours (--min-target, --keep-layers) and the ways validate's --method
    # may run its files
    takes: ClassVar[Tuple[str, ...]] = ()
    methods: ClassVar[Tuple[str, ...]] = ()
    # the arithmetic of compressed files where the format fixes it (LiteRT's dynamic-range int8: float32)
    compressed_precision: ClassVar[Optional[str]] = None
    # the runtimes of its runners that compute in plain float32 on any CPU (held to 1e-4 of max |ref|)
    exact_runtimes: ClassVar[Tuple[str, ...]] = ()
    # the Python packages its lowering and runner use (provenance records their versions)
    packages: ClassVar[Tuple[str, ...]] = ()
    # what `segment --backend`, `validate` and help texts say runs its files
    runs_on: ClassVar[str] = ""

    def fixed_precision(self, options) -> Optional[str]:
        """The arithmetic the format or mode fixes whatever --precision says (None: --precision chooses)."""
        if self.compressed_precision is not None and compression(options.compress).lossy:
            return self.compressed_precision
        return self.precisions[0] if len(self.precisions) == 1 else None

    def precision(self, options) -> str:
        """The arithmetic of the files written."""
        return self.fixed_precision(options) or options.precision

    def variant(self, options) -> str:
        """The file-name suffix of these options (`artifact_name`): compression, and FP32 where fp32 is a
        choice."""
        chosen = self.fixed_precision(options) is None and options.precision == "fp32"
        return compression(options.compress).suffix + ("FP32" if chosen else "")

    def bytes_per_weight(self, options) -> float:
        """Storage width of a weight in this target's files (the disk estimate of a full disk's error)."""
        mode = compression(options.compress)
        return 4 if self.precision(options) == "fp32" and not mode.lossy else mode.bytes_per_weight

    def file_names(self, spec: "ModelSpec", options) -> Dict[str, str]:
        """part -> file name of what this target writes for these options."""
        return {
            part: artifact_name(spec.artifact_stem, part, self.variant(options), self.extension)
            for part in spec.family.exported_parts(options)
        }

    def check_options(self, spec: "ModelSpec", options) -> None:
        """Refuse, before any work, what this target cannot write."""
        if options.compress not in self.compressions:
            offered = ", ".join(self.compressions)
            raise UsageError(
                f"--compress {options.compress} is not offered by {self.title} (it has: {offered})"
            )

    @abstractmethod
    def export(self, job: ExportJob, paths: Dict[str, Path]) -> Tuple[Dict, Optional["TargetReport"]]:
        """Write every part at `paths` (part -> path) and check it; returns this target's manifest section
        and its validation report (None with --no-validate). Raises SamExportError when a check fails."""

    @abstractmethod
    def runner(self, path: Path, method: str = "auto", fp32_reference: bool = True) -> "Runner":
        """What runs one of this target's files here (`method` chooses where a target has several)."""

    @abstractmethod
    def read_metadata(self, path: Path) -> Dict[str, str]:
        """The samexport metadata written into one of this target's files."""

    def image_input_of(self, path: Path) -> bool:
        """Whether one of this target's files takes an 8-bit image input."""
        return False

    def describes(self, path: Path) -> bool:
        return Path(path).name.endswith(self.extension)

    def bundled(self, path: Path) -> Optional[Dict[str, Path]]:
        """part -> file of a folder of this target's files that `path` names (Core AI's bundle), else None."""
        return None

    def runs_in_float16(self, options, part: Part) -> bool:
        """Whether a device computes this part's file in float16 arithmetic: float16 files without float32
        regions, uncompressed (compressed modes have their own floor). Their check then also holds the
        simulated float16 device (`float16_device`) to the float16 floor."""
        return (
            self.precision(options) == "fp16"
            and not compression(options.compress).lossy
            and not part.interface.keeps_float32_pooling
        )

    def check(self, job: ExportJob, parts: Dict[str, Part], paths: Dict[str, Path], method: str = "auto"):
        """Every part through this target's runner against PyTorch, held to its floors; the end-to-end
        check where the floor asks for one; the simulated float16 device for parts a device computes in
        float16. Raises on the first part that fails."""
        from .check import TargetReport

        report = TargetReport(self.name)
        # the simulated device takes the normalized tensor: an 8-bit image input's mean is subtracted by the
        # runtime before the part's module sees it (described only for targets with float16 parts)
        float16 = [name for name, part in parts.items() if self.runs_in_float16(job.options, part)]
        tensor_form = dataclasses.replace(self.form(job.options), image_input=False)
        simulated = job.parts(tensor_form) if float16 else {}
        for name, part in parts.items():
            runner = self.runner(paths[name], method)
            try:
                with job.progress.step(f"{self.title} {name} check ({runner.description} vs PyTorch)"):
                    report.parts[name] = check_with_chain(
                        self, part, runner, parts, paths, job.options, method
                    )
            finally:
                runner.close()
            if name in float16:
                key = json.dumps(simulated[name].interface.describe(), sort_keys=True)
                if key not in job.float16_device:
                    with job.progress.step(f"{name} on a simulated float16 device vs PyTorch"):
                        job.float16_device[key] = check_float16_device(simulated[name], job.options.compress)
                report.parts[name].float16_device = job.float16_device[key]
            report.parts[name].raise_if_failed(self.title, option_hint=self.float16_way_out(job.options))
        return report

    def float16_way_out(self, options) -> str:
        """What a user can do when a part fails on the simulated float16 device."""
        return f"--precision fp32 keeps {self.title} in float32 arithmetic"


def check_float16_device(part: Part, compress: str):
    """The part's module in simulated float16 device arithmetic against PyTorch, held to the float16 floor
    (a report that says why where the part is too costly to simulate)."""
    from .check import PartReport, check_part
    from .float16_device import too_costly
    from .quality import part_floors
    from .runners import Float16DeviceRunner

    interface = part.interface
    floors = part_floors(interface, "fp16", compress, Float16DeviceRunner.runtime)
    skipped = too_costly(part)
    if skipped:
        return PartReport(part.name, skipped, floors, {}, [])
    runner = Float16DeviceRunner(
        part.module().eval(), interface.output_names, interface.input_names, interface.float32_sums_over
    )
    return check_part(fewest_prompt_sets(part), runner, floors)


def fewest_prompt_sets(part: Part) -> Part:
    """The part with only the validation cases of its fewest prompt sets (symbolic dim "B"): prompt sets are
    computed independently, so more of them change how long a simulation takes, not what it finds."""
    batched = [(t.name, t.shape.index("B")) for t in part.interface.inputs if "B" in t.shape]
    if not batched:
        return part

    def cases(upstream):
        import numpy as np

        every = part.cases(upstream)
        sets = [max(np.shape(feeds[name])[axis] for name, axis in batched) for _, feeds, _ in every]
        return [case for case, count in zip(every, sets) if count == min(sets)]

    return dataclasses.replace(part, cases=cases)


def check_with_chain(target: ExportTarget, part: Part, runner, parts, paths, options, method: str):
    """`check.check_part` with this export's floors, plus the end-to-end check when they ask for one."""
    from .check import check_chain, check_part
    from .quality import floor_for, part_floors

    precision = target.precision(options)
    report = check_part(
        part, runner, part_floors(part.interface, precision, options.compress, runner.runtime)
    )
    min_iou = floor_for(precision, options.compress, runner.runtime).get("min_mask_iou")
    upstream = [parts[p] for p in dict.fromkeys(part.interface.upstream.values()) if p in parts]
    if (
        min_iou is not None
        and len(upstream) == 1
        and any(t.threshold is not None for t in part.interface.outputs)
    ):
        (source,) = upstream
        chain_runners = [
            target.runner(paths[source.name], method, fp32_reference=False),
            target.runner(paths[part.name], method, fp32_reference=False),
        ]
        try:
            report.chain = check_chain(source, chain_runners[0], part, chain_runners[1], min_iou)
        finally:
            for runner in chain_runners:
                runner.close()
    return report


def functions_of(path: Path, meta: Dict[str, str]) -> Dict[str, Dict[str, list]]:
    """function name -> input name -> shape, from a file's `com.samexport.functions` metadata, or a one-line
    UsageError where it is missing or not what convert writes."""
    text = meta.get("com.samexport.functions")
    if text is None:
        raise UsageError(f"{Path(path).name} carries no samexport metadata; convert it with samexport")
    try:
        functions = json.loads(text)
    except (ValueError, RecursionError):
        functions = None
    valid = (
        isinstance(functions, dict)
        and functions
        and all(
            isinstance(shapes, dict)
            and all(
                isinstance(shape, list) and all(isinstance(d, int) and 0 < d <= 1 << 20 for d in shape)
                for shape in shapes.values()
            )
            for shapes in functions.values()
        )
    )
    if not valid:
        raise UsageError(
            f"{Path(path).name}: its com.samexport.functions metadata is damaged; convert it again"
        )
    return functions


def refuse_over_single_file_limit(spec: "ModelSpec", limit: int, what: str, whose: str) -> None:
    """A one-line UsageError, before any work, when the float32 image encoder alone exceeds what one file of
    a format can hold (SAM ViT-H: 2.5 GB)."""
    import math

    from ..checkpoint import expected_layout

    weight_bytes = 4 * sum(
        math.prod(shape)
        for key, shape in expected_layout(spec.name).items()
        if key.startswith("image_encoder.")
    )
    if weight_bytes >= limit:
        raise UsageError(
            f"the {spec.name} {what} would hold {weight_bytes / 1e9:.2f} GB of float32 weights, over "
            f"{whose} 2 GB single-file limit (it would need external data files); use --target coreml "
            "for this model"
        )


def compression_config(target: ExportTarget, options) -> Dict:
    """The compression a target's file holds: the mode, and the options only Core ML's modes have
    (activations, deployment target, kept layers, clipping) where the target takes them."""
    config = compression(options.compress).describe()
    if "--min-target" not in target.takes:
        config = {k: v for k, v in config.items() if k not in ("activations", "min_target")}
    if "--keep-layers" in target.takes:
        config.update(keep_layers=options.keep_layers, weight_clip_sigmas=options.weight_clip)
    return config


def part_metadata(job: ExportJob, part: Part, precision: str, target: ExportTarget) -> Dict[str, str]:
    """What every exported file says about itself (`samexport validate` and apps read it back)."""
    spec, options, family = job.spec, job.options, job.spec.family
    contract = family.export_contract(job.shapes)
    interface = part.interface
    return {
        "com.samexport.model": spec.name,
        "com.samexport.title": spec.title,
        "com.samexport.family": family.name,
        "com.samexport.part": part.name,
        "com.samexport.checkpoint": job.checkpoint_sha256,
        "com.samexport.precision": precision,
        "com.samexport.compression": options.compress,
        "com.samexport.compression_config": json.dumps(compression_config(target, options)),
        "com.samexport.contract": json.dumps(contract),
        **job.shapes.metadata(),
        "com.samexport.functions": json.dumps(
            {f.name: {k: list(v) for k, v in f.shapes.items()} for f in interface.functions}
        ),
        **(
            {"com.samexport.letterbox_fill_rgb": json.dumps(contract.get("pad_color_rgb"))}
            if part.name == "encoder"
            else {}
        ),
    }


_TARGETS: Dict[str, ExportTarget] = {}


def register_target(cls: type) -> type:
    from ..provenance import record_packages
    from .quality import EXACT_RUNTIMES

    if cls.name in _TARGETS:
        raise ValueError(f"export target {cls.name!r} is registered twice")
    _TARGETS[cls.name] = cls()
    record_packages(*cls.packages)
    EXACT_RUNTIMES.update(cls.exact_runtimes)
    return cls


def unregister_target(name: str) -> None:
    _TARGETS.pop(name)


def _load() -> None:
    for module in TARGET_MODULES:
        importlib.import_module(module)


def targets() -> Dict[str, ExportTarget]:
    """name -> target, in registration order (importing a target module registers it)."""
    _load()
    return dict(_TARGETS)


def target_for_file(path: Path) -> ExportTarget:
    """The target whose files end like `path`, or a one-line UsageError."""
    for target in targets().values():
        if target.describes(path):
            return target
    known = ", ".join(t.extension for t in targets().values())
    raise UsageError(f"{Path(path).name} is no export samexport writes ({known}) nor an export manifest")
