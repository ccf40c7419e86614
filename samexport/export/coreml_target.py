"""Core ML target: every part as an ML program (ImageType encoder input, enumerated shapes or one static
function per shape), with metadata, compressed where asked, checked structurally and numerically (Core ML
prediction on a Mac, the NumPy evaluator elsewhere)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

from ..errors import SamExportError, UsageError
from ..parts import Interface, Part
from ..platforms import is_apple_silicon
from .compression import COMPRESSIONS, compression, parse_keep_layers, raised_target
from .target import ExportJob, ExportTarget, part_metadata, register_target

FLOAT32_POOLING_NOTE = (
    "hard-mask poolings and the ops they feed up to the next layer_norm; softmax over more than "
    "16384 keys and the matmul reading it (samexport.export.coreml_precision)"
)


@register_target
class CoreMLTarget(ExportTarget):
    """`<stem><Part><variant>.mlpackage` per part, named for the Swift classes Xcode generates."""

    name = "coreml"
    title = "Core ML"
    extension = ".mlpackage"
    compressions = tuple(COMPRESSIONS)
    exact_runtimes = ()
    packages = ("coremltools",)
    runs_on = "Core ML on a Mac, elsewhere its NumPy evaluation"
    takes = ("--min-target", "--keep-layers")
    methods = ("coreml", "numpy")
    packed_prompts = True
    dynamic = False
    decoder_shapes = ("enumerated", "multifunction")

    def settle_options(self, options) -> Tuple[str, ...]:
        """A compression mode or multifunction decoders raise the minimum deployment target they need."""
        mode = compression(options.compress)
        needed = raised_target(
            mode, "iOS18" if options.decoder_shapes == "multifunction" else options.min_target
        )
        if needed == options.min_target:
            return ()
        why = f"--compress {mode.name}" if needed == mode.min_target else "--decoder-shapes multifunction"
        note = f"{why} needs {needed}: minimum deployment target raised from {options.min_target}"
        options.min_target = needed
        return (note,)

    def image_input(self, options) -> bool:
        return options.image_input == "image"

    def export(self, job: ExportJob, paths: Dict[str, Path]) -> Tuple[Dict, object]:
        from ..coreml_package import CoreMLPackage
        from . import coreml_export

        options, progress = job.options, job.progress
        parts = job.parts(self.form(options))
        models = {}
        for name, part in parts.items():
            with progress.step(f"Core ML {name} conversion"):
                models[name] = self.lower(part, options)
        section: Dict = {
            "image_input": options.image_input,
            "decoder_shapes": options.decoder_shapes,
            "min_target": options.min_target,
        }
        if compression(options.compress).lossy:
            models, section["compression"] = self.compress(job, parts, models)
        for name, part in parts.items():
            self.describe(job, part, models[name])
        with progress.step("Core ML save"):
            for name, part in parts.items():
                varying = part.interface.varying()
                if options.decoder_shapes == "multifunction" and varying:
                    coreml_export.save_static_functions(
                        models[name],
                        {f.name: {n: f.shapes[n] for n in varying} for f in part.interface.functions},
                        paths[name],
                    )
                else:
                    models[name].save(str(paths[name]))
        del models
        packages = {name: CoreMLPackage(paths[name]) for name in parts}
        with progress.step("Core ML package checks"):
            for name, part in parts.items():
                section[name] = {"interface": part.interface.describe(), **part.interface.notes}
                if part.interface.float32_sums_over and options.precision == "fp16":
                    section[name]["fp16_float32_ops"] = (
                        f"matmuls summing {part.interface.float32_sums_over} terms or more "
                        "(samexport.export.coreml_precision)"
                    )
                section[name].update(self.structure(part.interface, packages[name], options))
        if any(p.interface.keeps_float32_pooling for p in parts.values()) and options.precision == "fp16":
            section["fp16_float32_ops"] = FLOAT32_POOLING_NOTE
        if is_apple_silicon():
            with progress.step("Core ML compute plans (where each op runs)"):
                for name in parts:
                    section[name]["placement"] = placements(paths[name])
        if not options.validate:
            return section, None
        return section, self.check(job, parts, paths)

    def lower(self, part: Part, options):
        """One part traced and converted to an ML program (not yet compressed, described or saved)."""
        from contextlib import nullcontext

        from ..modeling.common import values_in_one_product
        from . import coreml_export
        from .coreml_precision import float32_region

        interface = part.interface
        inputs = []
        for tensor in interface.inputs:
            shapes = [f.shapes[tensor.name] for f in interface.functions]
            if tensor.image:
                inputs.append(coreml_export.image_input([-b for b in tensor.pixel_bias], shapes[0]))
            elif tensor.name in interface.varying():  # multifunction: materialized per function when saved
                inputs.append(coreml_export.tensor_input(tensor.name, list(dict.fromkeys(shapes))))
            else:
                inputs.append(coreml_export.tensor_input(tensor.name, shapes[0]))
        # int8 activations quantize each partial product: see `values_in_one_product`
        with values_in_one_product() if compression(options.compress).activations else nullcontext():
            traced = coreml_export.trace(part.module(), part.example())
        selector = (
            float32_region(interface.keeps_float32_pooling, interface.float32_sums_over)
            if interface.keeps_float32_pooling or interface.float32_sums_over
            else None
        )
        return coreml_export.convert(
            traced, inputs, interface.output_names, options.precision, options.min_target, selector
        )

    def compress(self, job: ExportJob, parts: Dict[str, Part], models: Dict):
        """Every part compressed by the --compress mode, and what was done (kept layers, clipping,
        calibration, statistics of the weights compressed) for the manifest."""
        from . import calibration, coreml_compress

        options, progress = job.options, job.progress
        mode = compression(options.compress)
        keep = parse_keep_layers(options.keep_layers)
        kept = {name: coreml_compress.kept_ops(model, keep) for name, model in models.items()}
        missing = coreml_compress.unmatched(keep, kept.values())
        if mode.weights and options.min_target == "iOS18":
            for name, model in models.items():
                kept[name] = {**coreml_compress.fusion_hazards(model), **kept[name]}
        if missing:
            raise UsageError(
                f"--keep-layers {','.join(missing)} matches no weight layer of the {' or '.join(parts)}; "
                "give PyTorch module paths (e.g. image_encoder.features.0) or MIL op names; "
                "nothing was written"
            )
        record = {
            **mode.describe(),
            "kept_layers": kept,
            "weight_clip_sigmas": options.weight_clip,
            "weights": {
                name: coreml_compress.weight_statistics(m, set(kept[name])) for name, m in models.items()
            },
        }
        samples = {name: [] for name in models}
        if mode.activations:
            with progress.step("activation calibration inputs (generated images, PyTorch)"):
                samples = {name: part.calibration() for name, part in parts.items()}
            record["calibration"] = calibration.describe(samples)
        for name in models:
            with progress.step(f"Core ML {name} {mode.name} compression"):
                models[name] = coreml_compress.compress(
                    models[name], mode, kept[name], options.weight_clip, samples[name]
                )
        return models, record

    def describe(self, job: ExportJob, part: Part, mlmodel) -> None:
        from ..version import __version__
        from . import coreml_export

        interface, options = part.interface, job.options
        coreml_export.set_metadata(
            mlmodel,
            f"{job.spec.title} {interface.title} (samexport)",
            __version__,
            {t.name: t.description for t in interface.inputs},
            {t.name: t.description for t in interface.outputs},
            {
                **part_metadata(job, part, options.precision, self),
                "com.samexport.min_target": options.min_target,
                "com.samexport.decoder_shapes": options.decoder_shapes,
            },
        )

    def structure(self, interface: Interface, package, options) -> Dict:
        """Structural checks that need no Core ML runtime; fails the run if any does not hold."""
        io, census, spec = package.io, package.op_census(), package.spec
        inputs = {f["name"]: f for f in io["inputs"]}
        outputs = {f["name"]: f for f in io["outputs"]}
        checks: Dict[str, bool] = {
            "inputs": set(inputs) == set(interface.input_names),
            "outputs float32": all(
                outputs.get(n, {}).get("dtype") == "float32" for n in interface.output_names
            ),
            "no range-flexible input": not any(f.get("range_flexible") for f in io["inputs"]),
        }
        if interface.reparameterized:
            checks["no batch_norm op"] = "batch_norm" not in census
        for tensor in interface.inputs:
            if tensor.image:
                checks[f"{tensor.name} is an image input"] = (
                    inputs.get(tensor.name, {}).get("kind") == "image"
                    and inputs[tensor.name].get("width") == tensor.shape[-1]
                )
        varying = interface.varying()
        if varying and options.decoder_shapes == "multifunction":
            expected = {f.name: {n: list(f.shapes[n]) for n in varying} for f in interface.functions}
            declared = {}
            for name in package.functions:
                fields = {f["name"]: f for f in package.io_of(name)["inputs"]}
                declared[name] = {
                    n: fields.get(n, {}).get("shape")
                    if not fields.get(n, {}).get("enumerated_shapes")
                    else None
                    for n in varying
                }
            checks[f"one static function per shape ({len(expected)})"] = declared == expected
            checks["the default function is the default shape"] = package.function == interface.default.name
        for tensor_name in varying if options.decoder_shapes != "multifunction" else ():
            field = inputs.get(tensor_name, {})
            wanted = {tuple(f.shapes[tensor_name]) for f in interface.functions}
            got = {tuple(s) for s in field.get("enumerated_shapes", [])} or {tuple(field.get("shape", []))}
            checks[f"{tensor_name} takes exactly the {len(wanted)} declared shapes"] = got == wanted
            checks[f"{tensor_name}'s default shape is the default function's"] = tuple(
                field.get("shape", [])
            ) == tuple(interface.default.shapes[tensor_name])
        meta = spec.description.metadata
        checks["metadata complete"] = bool(
            meta.author
            and meta.license
            and meta.versionString
            and meta.shortDescription
            and "com.samexport.contract" in meta.userDefined
        )
        checks["all features described"] = all(
            f.shortDescription for f in list(package.description.input) + list(package.description.output)
        )
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            raise SamExportError(
                f"Core ML {interface.part} package check failed: {', '.join(failed)}; nothing was written"
            )
        return {"io": io, "op_census": census, "ops_total": sum(census.values()), "checks": checks}

    def runner(self, path: Path, method: str = "auto", fp32_reference: bool = True):
        from ..coreml_package import CoreMLPackage
        from .coreml_runner import coreml_runner, resolve_method

        return coreml_runner(CoreMLPackage(path), resolve_method(method), fp32_reference)

    def image_input_of(self, path: Path) -> bool:
        from ..coreml_package import CoreMLPackage

        return any(f["kind"] == "image" for f in CoreMLPackage(path).io["inputs"])

    def read_metadata(self, path: Path) -> Dict[str, str]:
        from ..coreml_package import CoreMLPackage

        return dict(CoreMLPackage(path).metadata)


def placements(package: Path) -> Dict:
    """Compute unit -> where Core ML places the package's ops (MLComputePlan; macOS 14.4+)."""
    import tempfile

    from ..coreml_package import coremltools
    from ..coreml_placement import placement_or_reason

    with tempfile.TemporaryDirectory() as tmp:
        compiled = coremltools().utils.compile_model(str(package), destination_path=f"{tmp}/model.mlmodelc")
        return {units.lower(): placement_or_reason(compiled, units) for units in ("ALL", "CPU_AND_NE")}
