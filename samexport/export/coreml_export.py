"""Core ML export: ML programs with an ImageType encoder input and an enumerated-shape decoder."""

from __future__ import annotations

import contextlib
import io
import logging
import platform
import sys
import warnings
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import PlatformError, UsageError, first_line

COMPRESSIONS = ("none", "int8", "palettize8", "palettize6", "palettize4")
MIN_TARGETS = ("iOS16", "iOS17", "iOS18")


def _ct():
    # coremltools logs at import that its macOS runtime library is missing (expected on Linux)
    # and that torch > 2.7 is untested (these models convert fine); our manifest records versions.
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    import coremltools as ct

    return ct


@contextmanager
def no_progress_bars():
    """coremltools' per-pass tqdm bars (written to sys.stderr) would drown our progress lines."""
    with contextlib.redirect_stderr(io.StringIO()):
        yield


def trace(module: nn.Module, example_inputs) -> torch.jit.ScriptModule:
    # Tracer warnings flag Python-side shape checks (window padding, head sizes) that become
    # constants; every exported input shape is fixed or validated, so they are expected.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return torch.jit.trace(module.eval(), example_inputs, check_trace=False)


def convert(traced: torch.jit.ScriptModule, inputs: list, output_names: Sequence[str], precision: str,
            min_target: str):
    ct = _ct()
    with no_progress_bars():
        return ct.convert(
            traced,
            inputs=inputs,
            outputs=[ct.TensorType(name=n, dtype=np.float32) for n in output_names],
            convert_to="mlprogram",
            compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
            minimum_deployment_target=getattr(ct.target, min_target),
        )


def image_input(mean_255: Sequence[float]):
    """RGB 1024x1024 image; Core ML computes pixel - mean (1/std is folded into the first conv)."""
    ct = _ct()
    return ct.ImageType(name="image", shape=(1, 3, 1024, 1024), scale=1.0, bias=[-float(m) for m in mean_255],
                        color_layout=ct.colorlayout.RGB)


def tensor_input(name: str, shape, dtype=np.float32):
    ct = _ct()
    return ct.TensorType(name=name, shape=shape, dtype=dtype)


def enumerated(token_counts: Sequence[int], default: int, width: int = 3):
    ct = _ct()
    return ct.EnumeratedShapes(shapes=[[1, n, width] for n in token_counts], default=[1, default, width])


def compress(mlmodel, mode: str):
    """Weight compression on a converted model (works on Linux)."""
    if mode == "none":
        return mlmodel
    _ct()
    import coremltools.optimize.coreml as cto

    with no_progress_bars():
        if mode == "int8":
            config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric",
                                                                                      dtype="int8"))
            return cto.linear_quantize_weights(mlmodel, config=config)
        nbits = int(mode.removeprefix("palettize"))
        config = cto.OptimizationConfig(global_config=cto.OpPalettizerConfig(mode="kmeans", nbits=nbits))
        return cto.palettize_weights(mlmodel, config=config)


def set_metadata(mlmodel, short_description: str, version: str, inputs: Dict[str, str], outputs: Dict[str, str],
                 user_metadata: Dict[str, str]) -> None:
    mlmodel.author = "samexport"
    mlmodel.license = "Weights: see the official model's license. Export code: Apache-2.0 (samexport)."
    mlmodel.version = version
    mlmodel.short_description = short_description
    for name, text in inputs.items():
        mlmodel.input_description[name] = text
    for name, text in outputs.items():
        mlmodel.output_description[name] = text
    for key, value in user_metadata.items():
        mlmodel.user_defined_metadata[key] = value


def op_census(package: Path) -> Dict[str, int]:
    """Non-const ML program ops by type, read back from a saved package."""
    spec = load_spec(package)
    function = spec.mlProgram.functions["main"]
    block = function.block_specializations[function.opset]
    counts = Counter(op.type for op in block.operations if op.type != "const")
    return dict(sorted(counts.items()))


def open_package(package: Path):
    """A saved package, read without compiling it (works on any platform)."""
    ct = _ct()
    package = Path(package)
    if not package.exists():
        raise UsageError(f"{package} does not exist; pass an .mlpackage written by `samexport convert`")
    try:
        return ct.models.MLModel(str(package), skip_model_load=True)
    except Exception as e:  # coremltools raises bare Exceptions for unreadable packages
        raise UsageError(f"{package} is not a readable Core ML package ({first_line(e)}); re-run "
                         "`samexport convert`") from None


def load_spec(package: Path):
    return open_package(package).get_spec()


def describe_io(package: Path) -> Dict[str, List[Dict]]:
    """Inputs and outputs of a saved package: name, kind, shape, dtype, enumerated shapes."""
    spec = load_spec(package)
    from coremltools.proto import FeatureTypes_pb2


    def one(feature) -> Dict:
        kind = feature.type.WhichOneof("Type")
        if kind == "imageType":
            image = feature.type.imageType
            color = FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(image.colorSpace)
            return {"name": feature.name, "kind": "image", "width": image.width, "height": image.height,
                    "color_space": color}
        array = feature.type.multiArrayType
        enumerated_shapes = [list(s.shape) for s in array.enumeratedShapes.shapes]
        dtype = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(array.dataType).lower()
        return {"name": feature.name, "kind": "multiarray", "shape": list(array.shape), "dtype": dtype,
                "enumerated_shapes": enumerated_shapes,
                "range_flexible": array.WhichOneof("ShapeFlexibility") == "shapeRange"}

    return {"inputs": [one(f) for f in spec.description.input],
            "outputs": [one(f) for f in spec.description.output]}


def can_predict() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


def require_prediction() -> None:
    if not can_predict():
        raise PlatformError("Core ML prediction needs macOS on Apple silicon; on this machine use --method numpy "
                            "(the saved ML program evaluated in NumPy)")


def load_for_prediction(package: Path, compute_units: str = "ALL"):
    """A saved package loaded (compiled) once by Core ML, for several predictions (macOS only)."""
    require_prediction()
    ct = _ct()
    return ct.models.MLModel(str(package), compute_units=getattr(ct.ComputeUnit, compute_units))


def predict(model, feeds: Dict) -> Dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in model.predict(feeds).items()}
