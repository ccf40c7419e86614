"""ONNX export: trace, simplify with onnxsim, run with onnxruntime, quantize what keeps quality."""

from __future__ import annotations

import os
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import onnx
import torch
from torch import nn

from ..errors import first_line

# Opset 20 has a native Gelu op. At opset 17 GELU is exported as Div/Erf/Add/Mul/Mul, and after
# onnxsim folds one Mul onnxruntime no longer fuses the pattern: RepViT-SAM's simplified opset-17
# encoder ran 15-18% slower than the unsimplified one on CPU. With Gelu native both run alike.
OPSET = 20


def export(
    module: nn.Module,
    example_inputs: Tuple[torch.Tensor, ...],
    path: Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: Dict[str, Dict[int, str]] | None = None,
) -> None:
    """TorchScript-based export (the dynamo exporter writes external data and picks its own opset)."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # see coreml_export.trace
        # torch notes each Slice it leaves unfolded; onnxsim folds them after, and the check judges the file
        warnings.filterwarnings("ignore", message="Constant folding - ", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*torch.jit.trace", category=DeprecationWarning)
        torch.onnx.export(
            module.eval(),
            example_inputs,
            str(path),
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes=dynamic_axes or {},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


@contextmanager
def native_output_silenced():
    """onnxsim's C++ core prints a line for every shape-dependent op it cannot fold."""
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "wb") as devnull:
        try:
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def simplify(path: Path) -> Tuple[bool, str]:
    """Simplify in place with onnxsim; on any failure keep the unsimplified graph and say why."""
    import onnxsim

    model = onnx.load(str(path))
    before = len(model.graph.node)
    try:
        with native_output_silenced():
            simplified, ok = onnxsim.simplify(model)
    except Exception as e:  # onnxsim raises many types; the graph stays valid without it
        return (
            False,
            f"onnxsim failed ({type(e).__name__}: {first_line(e, 120)}); kept the unsimplified graph",
        )
    if not ok:
        return False, "onnxsim could not verify the simplified graph; kept the unsimplified graph"
    onnx.save(simplified, str(path))
    return True, f"onnxsim: {before} -> {len(simplified.graph.node)} nodes"


def session(model: Path | bytes, threads: int | None = None):
    """An onnxruntime CPU session of a model file (or a serialized model)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or (os.cpu_count() or 1)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run(path: Path, feeds: Dict[str, np.ndarray]) -> list:
    return session(path).run(None, feeds)


def hard_mask_names(model: onnx.ModelProto) -> List[str]:
    """The graph's hard masks in computation order: outputs of a Greater whose input is a Sigmoid's (RAP-SAM's
    pooling masks, sigmoid(logits) > 0.5)."""
    producer = {out: node for node in model.graph.node for out in node.output}
    return [
        node.output[0]
        for node in model.graph.node
        if node.op_type == "Greater" and getattr(producer.get(node.input[0]), "op_type", None) == "Sigmoid"
    ]


def session_with_hard_masks(path: Path, threads: int | None = None):
    """(session, output names, hard-mask names): the model with its hard masks as extra outputs, so a check
    can recompute the reference under the export's own masks (see quality.check_cases)."""
    model = onnx.load(str(path))
    names = [o.name for o in model.graph.output]
    masks = hard_mask_names(model)
    for name in masks:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.BOOL, None))
    return session(model.SerializeToString(), threads), names, masks


def quantize_int8(source: Path, target: Path) -> Dict[str, object]:
    """Dynamic int8 for MatMul/Gemm weights only; convolutions stay float32.

    Quantizing convolutions too (onnxruntime's default) turns RepViT-SAM's encoder into
    ConvInteger ops: 3x slower on CPU and cosine 0.76 against fp32.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from ..console import loggers_quiet

    with loggers_quiet(""):  # onnxruntime logs generic pre-processing advice on the root logger
        quantize_dynamic(
            str(source),
            str(target),
            op_types_to_quantize=["MatMul", "Gemm"],
            weight_type=QuantType.QInt8,
            per_channel=True,
        )
    quantized = sum(
        n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in onnx.load(str(target)).graph.node
    )
    method = "dynamic int8, MatMul/Gemm weights, per channel; convolutions stay float32"
    if not quantized:
        method += "; this graph has no MatMul/Gemm to quantize, so it is unchanged (float32)"
    return {"method": method, "int8_matmuls": quantized}


def copy_model(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)


def set_metadata(path: Path, props: Dict[str, str]) -> None:
    """Write `props` into the graph's metadata_props (what `samexport validate` reads back)."""
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def read_metadata(path: Path) -> Dict[str, str]:
    """The graph's metadata_props (empty for a file samexport did not write)."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf's decoder raises its own types for a damaged file
        from ..errors import UsageError

        raise UsageError(
            f"{Path(path).name} is not a readable ONNX file ({type(e).__name__}); convert it again"
        ) from None
    return {p.key: p.value for p in model.metadata_props}
