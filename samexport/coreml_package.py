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


def coremltools():
    """coremltools, imported quietly: on Linux it logs that its macOS runtime is missing and that
    torch > 2.7 is untested (samexport's manifests record the versions instead)."""
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    import coremltools as ct

    return ct


class CoreMLPackage:
    """One saved package, opened once with `skip_model_load=True` (no Core ML runtime needed)."""

    def __init__(self, path: Path) -> None:
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

    @functools.cached_property
    def spec(self):
        return self.model.get_spec()

    @property
    def metadata(self) -> Dict[str, str]:
        return dict(self.spec.description.metadata.userDefined)

    @functools.cached_property
    def io(self) -> Dict[str, List[Dict]]:
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

        return {
            "inputs": [one(f) for f in self.spec.description.input],
            "outputs": [one(f) for f in self.spec.description.output],
        }

    def op_census(self) -> Dict[str, int]:
        """Non-const ML program ops of `main` by type."""
        function = self.spec.mlProgram.functions["main"]
        block = function.block_specializations[function.opset]
        counts = Counter(op.type for op in block.operations if op.type != "const")
        return dict(sorted(counts.items()))
