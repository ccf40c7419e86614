"""Reading a saved .mlpackage without compiling it (any platform): its spec, inputs, outputs and ops.

Shared by the exporters' structural checks, `samexport validate` and the NumPy evaluator; each
opens a package once through `CoreMLPackage` and reads everything from that one copy.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from pathlib import Path
from typing import Dict, List

from .errors import UsageError, first_line

# What importing coremltools logs that says nothing about samexport's work: torchao, which coremltools
# imports when it is installed (litert-torch brings it), cannot load two kernels built for CUDA and Python
# 3.10, and torch's pytree deprecates the enum torchao registers.
IMPORT_NOISE = ("torchao", "torch.utils._pytree")


def coremltools():
    """coremltools, imported quietly: on Linux it logs that its macOS runtime is missing and that
    torch > 2.7 is untested (samexport's manifests record the versions instead), and IMPORT_NOISE."""
    from .console import loggers_quiet

    logging.getLogger("coremltools").setLevel(logging.ERROR)
    with loggers_quiet(*IMPORT_NOISE):
        import coremltools as ct
    return ct


class CoreMLPackage:
    """One saved package, opened once with `skip_model_load=True` (no Core ML runtime needed).

    A multifunction package is read through one of its functions (`function`, by default the
    package's default function); a single-function package has only `main`.
    """

    def __init__(self, path: Path, function: str | None = None) -> None:
        ct = coremltools()
        self.path = Path(path)
        if not self.path.exists():
            raise UsageError(
                f"{self.path} is missing; pass an .mlpackage written by `samexport convert` "
                "(or convert again)"
            )
        if self.path.suffix != ".mlpackage" or not self.path.is_dir():
            raise UsageError(
                f"{self.path} is not an .mlpackage folder; pass a package or an export manifest "
                "(*.export.json) written by `samexport convert`"
            )
        try:
            self.model = ct.models.MLModel(str(self.path), skip_model_load=True)
        except Exception as e:  # coremltools raises bare Exceptions for unreadable packages
            raise UsageError(
                f"{self.path} is not a readable Core ML package ({first_line(e)}); re-run `samexport convert`"
            ) from None
        names = self.functions
        self.function = function or self.spec.description.defaultFunctionName or "main"
        if self.function not in names:
            raise UsageError(f"{self.path.name} has no function {self.function!r}; it has {', '.join(names)}")

    @functools.cached_property
    def functions(self) -> List[str]:
        """The ML program's function names (`main` alone unless the package is multifunction)."""
        described = [f.name for f in self.spec.description.functions]
        return described or list(self.spec.mlProgram.functions) or ["main"]

    @property
    def description(self):
        """The chosen function's input/output description (the model's own for a single function)."""
        return self.description_of(self.function)

    def description_of(self, function: str):
        for f in self.spec.description.functions:
            if f.name == function:
                return f
        return self.spec.description

    def function_for(self, shapes: Dict[str, tuple]) -> str:
        """The function that takes inputs of exactly these shapes (one static function per shape in a
        multifunction package); the chosen function for a single-function package."""
        if len(self.functions) == 1:
            return self.function
        for name in self.functions:
            declared = {f["name"]: f for f in self.io_of(name)["inputs"]}
            if all(
                tuple(declared.get(k, {}).get("shape", ())) == tuple(v)
                or tuple(v) in {tuple(e) for e in declared.get(k, {}).get("enumerated_shapes", [])}
                for k, v in shapes.items()
            ):
                return name
        given = ", ".join(f"{k} {tuple(v)}" for k, v in shapes.items())
        raise UsageError(f"no function of {self.path.name} takes {given}; it has {', '.join(self.functions)}")

    @functools.cached_property
    def spec(self):
        return self.model.get_spec()

    @property
    def metadata(self) -> Dict[str, str]:
        return dict(self.spec.description.metadata.userDefined)

    @property
    def io(self) -> Dict[str, List[Dict]]:
        """The chosen function's inputs and outputs (see `io_of`)."""
        return self.io_of(self.function)

    @functools.lru_cache(maxsize=None)  # noqa: B019 (one package object per path, kept for the run)
    def io_of(self, function: str) -> Dict[str, List[Dict]]:
        """Inputs and outputs: name, kind, shape, dtype, enumerated shapes, range flexibility."""
        from coremltools.proto import FeatureTypes_pb2

        def one(feature) -> Dict:
            if feature.type.WhichOneof("Type") == "imageType":
                image = feature.type.imageType
                color = FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(image.colorSpace)
                return {
                    "name": feature.name,
                    "kind": "image",
                    "width": image.width,
                    "height": image.height,
                    "color_space": color,
                }
            array = feature.type.multiArrayType
            dtype = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(array.dataType).lower()
            return {
                "name": feature.name,
                "kind": "multiarray",
                "shape": list(array.shape),
                "dtype": dtype,
                "enumerated_shapes": [list(s.shape) for s in array.enumeratedShapes.shapes],
                "range_flexible": array.WhichOneof("ShapeFlexibility") == "shapeRange",
            }

        description = self.description_of(function)
        return {
            "inputs": [one(f) for f in description.input],
            "outputs": [one(f) for f in description.output],
        }

    def op_census(self) -> Dict[str, int]:
        """Non-const ML program ops of the chosen function by type."""
        function = self.spec.mlProgram.functions[self.function]
        block = function.block_specializations[function.opset]
        counts = Counter(op.type for op in block.operations if op.type != "const")
        return dict(sorted(counts.items()))
