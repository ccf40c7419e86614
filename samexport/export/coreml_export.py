"""Core ML building blocks: tracing, conversion to an ML program, input types (compression is
`coreml_compress`), metadata, and prediction on Apple silicon. The target that uses them is
`coreml_target`."""

from __future__ import annotations

import contextlib
import io
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Sequence

import numpy as np
import torch
from torch import nn

from ..coreml_package import coremltools
from ..errors import PlatformError
from ..platforms import is_apple_silicon


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


def convert(
    traced: torch.jit.ScriptModule,
    inputs: list,
    output_names: Sequence[str],
    precision: str,
    min_target: str,
    fp16_op_selector=None,
):
    """An ML program; with `fp16_op_selector` (op -> True for float16) an fp16 program keeps the ops it
    rejects in float32 (coremltools' per-op compute precision)."""
    ct = coremltools()
    if precision == "fp16":
        compute_precision = (
            ct.transform.FP16ComputePrecision(op_selector=fp16_op_selector)
            if fp16_op_selector is not None
            else ct.precision.FLOAT16
        )
    else:
        compute_precision = ct.precision.FLOAT32
    with no_progress_bars():
        return ct.convert(
            traced,
            inputs=inputs,
            outputs=[ct.TensorType(name=n, dtype=np.float32) for n in output_names],
            convert_to="mlprogram",
            compute_precision=compute_precision,
            minimum_deployment_target=getattr(ct.target, min_target),
        )


def image_input(mean_255: Sequence[float], shape: Sequence[int] = (1, 3, 1024, 1024)):
    """RGB image (1024x1024 unless `shape` says); Core ML computes pixel - mean (1/std is folded into
    the first conv)."""
    ct = coremltools()
    return ct.ImageType(
        name="image",
        shape=tuple(shape),
        scale=1.0,
        bias=[-float(m) for m in mean_255],
        color_layout=ct.colorlayout.RGB,
    )


def tensor_input(name: str, shape, dtype=np.float32):
    """A float32 input of a fixed shape, or of enumerated shapes (a list; the first is the default)."""
    ct = coremltools()
    if isinstance(shape, list):
        shape = ct.EnumeratedShapes(shapes=[list(s) for s in shape], default=list(shape[0]))
    return ct.TensorType(name=name, shape=shape, dtype=dtype)


def set_metadata(
    mlmodel,
    short_description: str,
    version: str,
    inputs: Dict[str, str],
    outputs: Dict[str, str],
    user_metadata: Dict[str, str],
) -> None:
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


def require_prediction() -> None:
    if not is_apple_silicon():
        raise PlatformError(
            "Core ML prediction needs macOS on Apple silicon; on this machine use --method numpy "
            "(the saved ML program evaluated in NumPy)"
        )


def load_for_prediction(package: Path, compute_units: str = "ALL", function: str | None = None):
    """A saved package (one function of a multifunction package) loaded (compiled) once by Core ML, for
    several predictions (macOS only)."""
    require_prediction()
    ct = coremltools()
    units = getattr(ct.ComputeUnit, compute_units)
    if function is None:
        return ct.models.MLModel(str(package), compute_units=units)
    return ct.models.MLModel(str(package), compute_units=units, function_name=function)


def predict(model, feeds: Dict) -> Dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in model.predict(feeds).items()}


def save_static_functions(mlmodel, shapes_by_function: Dict[str, Dict[str, tuple]], path: Path) -> None:
    """A multifunction package (iOS18) with one static-shape function per entry of `shapes_by_function`
    (function name -> input name -> shape), the first the default, weights shared across functions;
    metadata and feature descriptions as on `mlmodel`."""
    import tempfile

    ct = coremltools()
    source = mlmodel.get_spec().description
    names = list(shapes_by_function)
    with tempfile.TemporaryDirectory() as tmp, no_progress_bars(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "may still be materialized": the other inputs are static already
        everything = f"{tmp}/materialized.mlpackage"
        ct.utils.materialize_dynamic_shape_mlmodel(mlmodel, shapes_by_function, everything)
        chosen = ct.utils.MultiFunctionDescriptor()
        for name in names:  # leaves out the enumerated `main` the materialization keeps
            chosen.add_function(everything, src_function_name=name, target_function_name=name)
        chosen.default_function_name = names[0]
        combined = f"{tmp}/combined.mlpackage"
        ct.utils.save_multifunction(chosen, combined)
        model = ct.models.MLModel(combined, skip_model_load=True)
        spec = model.get_spec()
        spec.description.metadata.CopyFrom(source.metadata)
        text = {f.name: f.shortDescription for f in list(source.input) + list(source.output)}
        for function in spec.description.functions:
            for feature in list(function.input) + list(function.output):
                feature.shortDescription = text.get(feature.name, "")
        ct.models.MLModel(spec, weights_dir=model.weights_dir, skip_model_load=True).save(str(path))
