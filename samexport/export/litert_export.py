"""LiteRT export: Google's converter from `torch.export` (`litert_torch`), one `.tflite` per part with one
signature per static shape, named inputs and outputs as the ONNX graphs have them; float16 weights by
Google's quantizer (`ai_edge_quantizer`'s float casting, TFLite's "float16 quantization"); samexport's
metadata as one `samexport` entry of the flatbuffer's metadata; and the structure of a file (op census,
largest tensor rank) read back from the flatbuffer with LiteRT's own schema.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch

from ..errors import UsageError, first_line

METADATA_NAME = "samexport"  # the flatbuffer metadata entry holding samexport's key/values (JSON)
FLOAT16_MAX = 65504.0
WEIGHTS = ("float32", "float16", "int8")
# TFLite's float16 quantization: the weights of these ops stored as float16, dequantized where they are used
FLOAT16_WEIGHTS_RECIPE = [
    {
        "regex": ".*",
        "operation": "*",
        "algorithm_key": "float_casting",
        "op_config": {
            "weight_tensor_config": {"num_bits": 16, "dtype": "FLOAT"},
            "compute_precision": "FLOAT",
            "explicit_dequantize": True,
        },
    }
]


class NamedPart(torch.nn.Module):
    """A part's module called with its inputs by name and returning its outputs by name: the converter
    names a signature's tensors after the keyword arguments and the returned dict's keys."""

    def __init__(self, module: torch.nn.Module, input_names: List[str], output_names: List[str]) -> None:
        super().__init__()
        self.module, self.input_names, self.output_names = module, list(input_names), list(output_names)

    def forward(self, **feeds: torch.Tensor) -> Dict[str, torch.Tensor]:
        outputs = self.module(*[feeds[n] for n in self.input_names])
        outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        return dict(zip(self.output_names, outputs))


def weights_for(compress: str, precision: str) -> str:
    """How a file stores its weights (WEIGHTS): int8 for --compress int8, else by --precision."""
    if compress == "int8":
        return "int8"
    return "float16" if precision == "fp16" else "float32"


def convert_part(
    module: torch.nn.Module,
    input_names: List[str],
    output_names: List[str],
    functions: List[Tuple[str, Dict[str, tuple]]],
    weights: str,
) -> bytes:
    """The flatbuffer of a part with one signature per function ((name, input name -> shape)), each traced
    by `torch.export` at its static shapes, its weights stored as `weights` (WEIGHTS)."""
    from ..console import converter_output_held
    from ..modeling.deform_conv import sampling_by_gather

    # deformable convolutions sample by explicit gathers, as for Core AI (one lowering for both)
    with converter_output_held(), torch.no_grad(), warnings.catch_warnings(), sampling_by_gather():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        import litert_torch

        litert_torch.config.show_progress = False
        named = NamedPart(module.eval(), input_names, output_names).eval()
        converter = litert_torch.Converter()
        for name, shapes in functions:
            converter.add_signature(
                name, named, sample_kwargs={n: torch.zeros(shapes[n]) for n in input_names}
            )
        flatbuffer = converter.convert().model_content()
        if weights != "float32":
            flatbuffer = quantized(flatbuffer, weights)
    return bytes(flatbuffer)


def quantized(flatbuffer: bytes, weights: str) -> bytes:
    """Google's quantizer with TFLite's recipe for `weights`: float16 quantization, or dynamic-range int8
    (`dynamic_wi8_afp32`: int8 weights per channel, activations quantized per call). Its root-logger
    warning for every weight that several signatures share (the same data written again into the shared
    buffer) is kept quiet, so that a failure's held output shows what failed."""
    from ai_edge_quantizer import quantizer, recipe

    from ..console import loggers_quiet

    with loggers_quiet(""):
        q = quantizer.Quantizer(bytearray(flatbuffer))
        q.load_quantization_recipe(
            FLOAT16_WEIGHTS_RECIPE if weights == "float16" else recipe.dynamic_wi8_afp32()
        )
        return bytes(q.quantize().quantized_model)


def write(flatbuffer: bytes, path: Path, metadata: Dict[str, str]) -> None:
    """The flatbuffer with samexport's metadata added, written to `path`."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(metadata, sort_keys=True).encode(), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_NAME.encode()] + [entry]
    Path(path).write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))


class CompiledPart:
    """A `.tflite` compiled by LiteRT for this CPU (its XNNPACK accelerator, Google's `CompiledModel` API,
    float32 inference), run one signature at a time."""

    def __init__(self, path: Path, threads: int) -> None:
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.options import CpuOptions, Options

        from ..console import converter_output_held

        options = CpuOptions(num_threads=threads)
        with converter_output_held():  # the accelerator registry's log lines
            self.model = CompiledModel.from_file(str(path), options=Options(cpu_options=options))
        self.path = Path(path)
        self.buffers: Dict[str, Tuple[int, list, list, Dict, Dict]] = {}

    def close(self) -> None:
        """Release the model, its buffers and its environment (whose accelerators log as they go)."""
        import gc

        from ..console import converter_output_held

        with converter_output_held():
            environment = getattr(self.model, "_environment", None)
            self.buffers.clear()
            self.model.close()
            if environment is not None and hasattr(environment, "close"):
                environment.close()
            self.model = None
            gc.collect()

    def prepare(self, signature: str) -> None:
        """The signature's input and output buffers (made once per signature)."""
        if signature not in self.buffers:
            index = self.model.get_signature_index(signature)
            self.buffers[signature] = (
                index,
                self.model.create_input_buffers(index),
                self.model.create_output_buffers(index),
                self.model.get_output_tensor_details(signature),
                self.model.get_signature_list()[signature],
            )

    def run(self, signature: str, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        self.prepare(signature)
        index, inputs, outputs, details, names = self.buffers[signature]
        for name, buffer in zip(names["inputs"], inputs):
            buffer.write(np.ascontiguousarray(feeds[name], dtype=np.float32))
        self.model.run_by_index(index, inputs, outputs)
        result = {}
        for name, buffer in zip(names["outputs"], outputs):
            shape = details[name]["shape"]
            result[name] = buffer.read(int(np.prod(shape)), np.float32).reshape(shape)
        return result


# bytes per element of the tensor types whose constant data has a fixed size (LiteRT's `TensorType`)
ITEM_BYTES = {
    "FLOAT32": 4,
    "FLOAT16": 2,
    "INT32": 4,
    "UINT8": 1,
    "INT64": 8,
    "BOOL": 1,
    "INT16": 2,
    "INT8": 1,
}


def _model(path: Path):
    """The flatbuffer's root, after `check_structure`: a truncated, zeroed or bit-flipped file is a one-line
    UsageError here, never a crash inside LiteRT's native loader (which reads offsets unchecked)."""
    from ai_edge_litert import schema_py_generated as schema

    name = Path(path).name
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {name} ({e.strerror or type(e).__name__})") from None
    try:
        if len(data) < 8 or data[4:8] != b"TFL3":
            raise ValueError("no TFL3 identifier")
        model = schema.Model.GetRootAs(data, 0)
        check_structure(model, len(data))
    except Exception as e:  # any malformed offset surfaces as some exception of flatbuffers' reader
        raise UsageError(
            f"{name} is not a readable LiteRT model ({first_line(e) or type(e).__name__}); it is damaged or "
            "truncated: convert it again"
        ) from None
    return model


def check_structure(model, size: int) -> None:
    """Every offset and index of the model inside the file and its tables: buffers within the file,
    constant tensors holding as many bytes as their shape needs, operators, subgraph and signature tensor
    indices in range, operator codes known. Raises ValueError naming the first thing out of place."""
    types = _schema_names("TensorType")
    buffers = model.BuffersLength()
    for b in range(buffers):
        buffer = model.Buffers(b)
        if buffer.Offset() > 1 and buffer.Offset() + buffer.Size() > size:
            raise ValueError(f"buffer {b} ends past the end of the file")
        if buffer.DataLength():
            buffer.DataAsNumpy()  # numpy refuses a vector reaching past the file
    codes = model.OperatorCodesLength()
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        tensors = graph.TensorsLength()
        for t in range(tensors):
            tensor = graph.Tensors(t)
            shape = tensor.ShapeAsNumpy() if tensor.ShapeLength() else np.zeros(0, np.int32)
            if tensor.Buffer() >= buffers:
                raise ValueError(f"tensor {t} of subgraph {s} names buffer {tensor.Buffer()} of {buffers}")
            buffer = model.Buffers(tensor.Buffer())
            held = buffer.DataLength() or (buffer.Size() if buffer.Offset() > 1 else 0)
            item = ITEM_BYTES.get(types.get(tensor.Type(), ""))
            if held and item and (shape < 0).any():
                raise ValueError(f"constant tensor {t} of subgraph {s} has a negative dimension")
            if held and item and held != item * int(np.prod(shape.astype(np.int64))):
                raise ValueError(f"constant tensor {t} of subgraph {s} holds {held} bytes, not its shape's")
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            if op.OpcodeIndex() >= codes:
                raise ValueError(f"operator {o} of subgraph {s} has an unknown operator code")
            used = [op.Inputs(k) for k in range(op.InputsLength())]
            used += [op.Outputs(k) for k in range(op.OutputsLength())]
            if any(not -1 <= i < tensors for i in used):
                raise ValueError(f"operator {o} of subgraph {s} names a tensor out of range")
        ends = [graph.Inputs(k) for k in range(graph.InputsLength())]
        ends += [graph.Outputs(k) for k in range(graph.OutputsLength())]
        if any(not 0 <= i < tensors for i in ends):
            raise ValueError(f"subgraph {s} names an input or output tensor out of range")
    for i in range(model.SignatureDefsLength()):
        definition = model.SignatureDefs(i)
        if not 0 <= definition.SubgraphIndex() < model.SubgraphsLength():
            raise ValueError(f"signature {i} names subgraph {definition.SubgraphIndex()}")
        tensors = model.Subgraphs(definition.SubgraphIndex()).TensorsLength()
        maps = [definition.Inputs(k) for k in range(definition.InputsLength())]
        maps += [definition.Outputs(k) for k in range(definition.OutputsLength())]
        if any(not 0 <= m.TensorIndex() < tensors for m in maps):
            raise ValueError(f"signature {i} names a tensor out of range")
        for m in maps:
            m.Name().decode()
        definition.SignatureKey().decode()
    for i in range(model.MetadataLength()):
        if model.Metadata(i).Buffer() >= buffers:
            raise ValueError(f"metadata entry {i} names buffer {model.Metadata(i).Buffer()} of {buffers}")


def read_metadata(path: Path) -> Dict[str, str]:
    """samexport's metadata of a `.tflite` (no interpreter needed); empty if it has none."""
    model = _model(path)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() == METADATA_NAME.encode():
            data = model.Buffers(entry.Buffer()).DataAsNumpy()
            try:
                found = json.loads(bytes(data).decode())
            except (UnicodeDecodeError, ValueError, RecursionError):
                found = None
            if not isinstance(found, dict):
                raise UsageError(
                    f"{Path(path).name}'s samexport metadata is damaged (not a JSON object); convert it again"
                )
            return {k: str(v) for k, v in found.items()}
    return {}


@functools.lru_cache(maxsize=None)
def _schema_names(enum: str) -> Dict[int, str]:
    """value -> name of one of LiteRT's schema enums (`BuiltinOperator`, `TensorType`)."""
    from ai_edge_litert import schema_py_generated as schema

    return {v: k for k, v in vars(getattr(schema, enum)).items() if not k.startswith("_")}


def op_name(model, op) -> str:
    """The operator's name in LiteRT's schema (`CONV_2D`, ...; `CUSTOM:<code>` for a custom op)."""
    names = _schema_names("BuiltinOperator")
    code = model.OperatorCodes(op.OpcodeIndex())
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    return names.get(builtin, f"CUSTOM:{(code.CustomCode() or b'').decode()}")


def structure(path: Path) -> Dict:
    """What the file holds, read from its flatbuffer: its signatures' tensors in buffer order, ops by name,
    the largest tensor rank (and the ops producing tensors above rank 4, which LiteRT's GPU delegate does not
    take), the constant tensors by type (FLOAT16 or INT8 weights where quantized)."""
    model = _model(path)
    census: Counter = Counter()
    above_rank4: Counter = Counter()
    types = _schema_names("TensorType")
    constant_types: Dict[int, str] = {}  # buffer -> type of the constants (weights, tables) held in it
    max_rank = 0
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        ranks = [graph.Tensors(t).ShapeLength() for t in range(graph.TensorsLength())]
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            buffer = model.Buffers(tensor.Buffer())
            if tensor.Buffer() and (buffer.DataLength() or buffer.Size()):
                constant_types[tensor.Buffer()] = types.get(tensor.Type(), str(tensor.Type()))
        max_rank = max([max_rank, *ranks])
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            name = op_name(model, op)
            census[name] += 1
            if any(ranks[op.Outputs(k)] > 4 for k in range(op.OutputsLength()) if op.Outputs(k) >= 0):
                above_rank4[name] += 1
    weight_types = Counter(constant_types.values())
    return {
        "signatures": signature_io(model),
        "ops": dict(sorted(census.items())),
        "custom_ops": sorted(n for n in census if n.startswith("CUSTOM:")),
        "max_rank": max_rank,
        "ops_above_rank4": dict(sorted(above_rank4.items())),
        "constants_by_type": dict(sorted(weight_types.items())),
        "bytes": os.path.getsize(path),
    }


def signature_io(model) -> Dict[str, Dict[str, List[str]]]:
    """Each signature's input and output names in the order of its tensors: the order of the buffers that
    LiteRT's CompiledModel creates for it (`createInputBuffers`, `createOutputBuffers`)."""
    found = {}
    for i in range(model.SignatureDefsLength()):
        definition = model.SignatureDefs(i)
        found[definition.SignatureKey().decode()] = {
            "inputs": [definition.Inputs(k).Name().decode() for k in range(definition.InputsLength())],
            "outputs": [definition.Outputs(k).Name().decode() for k in range(definition.OutputsLength())],
        }
    return found


def largest_activation(path: Path, signature: str, feeds: Dict[str, np.ndarray]) -> Dict:
    """The largest finite |value| of every float32 tensor one call computes (LiteRT's built-in kernels, all
    intermediate tensors kept): how far the part is from float16's range (65504), the risk of a float16
    path, on this input."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from ..console import converter_output_held

    with converter_output_held():
        interpreter = Interpreter(
            model_path=str(path),
            experimental_preserve_all_tensors=True,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        feeds = {k: np.asarray(v, np.float32) for k, v in feeds.items()}
        try:
            interpreter.get_signature_runner(signature)(**feeds)
        except RuntimeError:  # every tensor of one call kept at once: past what the interpreter allocates
            return {
                "signature": signature,
                "not_measured": "LiteRT's reference interpreter could not allocate every tensor of one call "
                "at once (AllocateTensors failed)",
            }
    model = _model(path)
    graph_index = next(
        model.SignatureDefs(i).SubgraphIndex()
        for i in range(model.SignatureDefsLength())
        if model.SignatureDefs(i).SignatureKey().decode() == signature
    )
    graph = model.Subgraphs(graph_index)
    largest, where, named, non_finite = 0.0, -1, "", 0
    for detail in interpreter.get_tensor_details(graph_index):
        # the file's own tensors only: the interpreter's scratch tensors after them hold no computed value
        if detail["index"] >= graph.TensorsLength():
            continue
        if detail["dtype"] != np.float32 or not np.prod(detail["shape"]):
            continue
        try:
            value = interpreter.get_tensor(detail["index"], graph_index)
        except ValueError:  # a tensor with no data (an unused or scratch tensor)
            continue
        finite = np.isfinite(value)
        non_finite += int(not finite.all())
        peak = float(np.abs(value[finite]).max()) if finite.any() else 0.0
        if peak > largest:
            largest, where, named = peak, detail["index"], detail["name"]
    producer = ""
    if where >= 0:
        producer = next(
            (
                op_name(model, graph.Operators(o))
                for o in range(graph.OperatorsLength())
                if where in [graph.Operators(o).Outputs(k) for k in range(graph.Operators(o).OutputsLength())]
            ),
            "an input or a constant",
        )
    return {
        "signature": signature,
        "max_abs": largest,
        "tensor": named,
        "made_by": producer,
        # intermediates holding NaN/Inf (seen in RAP-SAM's files at 800x1088): counted here; the outputs are
        # what the check holds
        "tensors_with_non_finite_values": non_finite,
        "float16_headroom": FLOAT16_MAX / largest if largest else None,
        "fits_float16": largest < FLOAT16_MAX,
    }
