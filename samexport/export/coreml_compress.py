"""Applying a `--compress` mode to a converted Core ML model, on any platform.

Weights go through coremltools' own passes (`linear_quantize_weights`, `palettize_weights`).
Activations go through coremltools' own `linear_quantize_activations` (the same quantize/dequantize
insertion and de-duplication), with one step replaced: its calibration runs the model with Core ML
prediction (macOS only), ours observes every value while `samexport.mileval` evaluates the saved
program on the calibration feeds, so W8A8 calibrates on Linux too.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple

import numpy as np

from ..coreml_package import coremltools
from ..errors import UsageError
from .compression import FIRST_LAST, Compression
from .coreml_export import no_progress_bars

WEIGHT_OPS = ("conv", "conv_transpose", "linear", "matmul")


def weight_layers(mlmodel) -> List[Tuple[str, str]]:
    """(op name, weight const name) of every op that consumes a constant weight, in program order."""
    layers = []
    for op in _main(mlmodel).operations:
        if op.op_type not in WEIGHT_OPS:
            continue
        weight = op.inputs.get("weight", op.inputs.get("y"))
        if weight is not None and weight.op is not None and weight.op.op_type == "const":
            layers.append((op.name, weight.op.name))
    return layers


def kept_ops(mlmodel, keep: Sequence[str]) -> Dict[str, str]:
    """op name -> why it keeps float weights: `first-last`, or the names given that match the op's name
    or its weight's name (a PyTorch module path matches with its dots read as underscores)."""
    layers = weight_layers(mlmodel)
    if not keep or not layers:
        return {}
    if tuple(keep) == (FIRST_LAST,):
        return {layers[0][0]: "first layer", layers[-1][0]: "last layer"}
    kept = {}
    for name in keep:
        prefix = name.replace(".", "_")
        for op_name, weight in layers:
            if op_name == name or weight.startswith(prefix):
                kept[op_name] = f"--keep-layers {name}"
    return kept


def fusion_hazards(mlmodel) -> Dict[str, str]:
    """Convs that coremltools 9.0 cannot recompile once their weight is an iOS18 constexpr op: its
    `fuse_conv_bias` pass reads `conv.weight.val` (None there) for a conv -> transpose -> add/sub of a
    constant (EfficientSAM's patch embedding plus position embedding) and fails. They keep float weights."""
    hazards = {}
    for op in _main(mlmodel).operations:
        if op.op_type != "conv" or len(op.outputs[0].child_ops) != 1:
            continue
        transpose = op.outputs[0].child_ops[0]
        if transpose.op_type != "transpose" or len(transpose.outputs[0].child_ops) != 1:
            continue
        add = transpose.outputs[0].child_ops[0]
        if add.op_type in ("add", "sub") and any(
            v.op is not None and v.op.op_type == "const" for v in (add.x, add.y)
        ):
            hazards[op.name] = (
                "kept float: coremltools 9.0 fuse_conv_bias fails on a compressed conv -> transpose -> add"
            )
    return hazards


def unmatched(keep: Sequence[str], kept_by_part: Iterable[Dict[str, str]]) -> List[str]:
    """Names given to --keep-layers that matched no layer of any part."""
    if tuple(keep) == (FIRST_LAST,):
        return []
    matched = {why.removeprefix("--keep-layers ") for kept in kept_by_part for why in kept.values()}
    return [name for name in keep if name not in matched]


def compress(mlmodel, mode: Compression, kept: Dict[str, str], clip: float | None, calibration: List[Dict]):
    """The compressed model: int8 activations first (calibrated on `calibration`, a list of feeds), then
    the weights; ops in `kept` keep float weights and activations."""
    if not mode.lossy:
        return mlmodel
    coremltools()
    import coremltools.optimize.coreml as cto

    skip = {name: None for name in kept}
    with no_progress_bars():
        if mode.activations:
            config = cto.OptimizationConfig(
                global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8"),
                op_name_configs=dict(skip),
            )
            with evaluator_calibration():
                mlmodel = cto.linear_quantize_activations(mlmodel, config, sample_data=calibration)
        if clip is not None:
            mlmodel = clip_weights(mlmodel, clip, set(kept))
        if mode.weights == "int8":
            weights = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8")
            config = cto.OptimizationConfig(global_config=weights, op_name_configs=dict(skip))
            return cto.linear_quantize_weights(mlmodel, config=config)
        extra = (
            {"granularity": "per_grouped_channel", "group_size": mode.group_size} if mode.group_size else {}
        )
        palettes = cto.OpPalettizerConfig(mode="kmeans", nbits=mode.nbits, **extra)
        config = cto.OptimizationConfig(global_config=palettes, op_name_configs=dict(skip))
        return cto.palettize_weights(mlmodel, config=config)


# -- activation calibration through the evaluator -------------------------------------------------
def activation_ranges(mlmodel, calibration: List[Dict]) -> Dict[str, Dict[str, float]]:
    """var name -> {"rmin", "rmax"} over every calibration feed: the program saved, read back and
    evaluated as declared; inputs and outputs of one concat share one range, as coremltools does."""
    from ..mileval import evaluate, load_program

    low: Dict[str, float] = defaultdict(lambda: np.inf)
    high: Dict[str, float] = defaultdict(lambda: -np.inf)

    def observe(name: str, value) -> None:
        if isinstance(value, np.ndarray) and value.size and value.dtype.kind == "f":
            low[name] = min(low[name], float(value.min()))
            high[name] = max(high[name], float(value.max()))

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "calibration.mlpackage"
        mlmodel.save(str(path))
        program = load_program(path)
        for feeds in calibration:
            evaluate(program, feeds, "program", observe=observe)
        concats = [
            [v.name for v in op.inputs["values"]] + [op.outputs[0].name]
            for op in program.operations
            if op.op_type == "concat"
        ]
    stats = {name: {"rmin": low[name], "rmax": high[name]} for name in low}
    for group in _merged(concats):
        present = [stats[n] for n in group if n in stats]
        if present:
            shared = {"rmin": min(s["rmin"] for s in present), "rmax": max(s["rmax"] for s in present)}
            for name in group:
                if name in stats:
                    stats[name] = dict(shared)
    return stats


def _merged(groups: List[List[str]]) -> List[set]:
    """Groups that share a name, merged (a value feeding two concats ties their ranges together)."""
    merged: List[set] = []
    for group in map(set, groups):
        overlapping = [m for m in merged if m & group]
        for m in overlapping:
            group |= m
            merged.remove(m)
        merged.append(group)
    return merged


@contextlib.contextmanager
def evaluator_calibration():
    """coremltools' `linear_quantize_activations` with its calibration step (Core ML prediction of
    every intermediate value) answered by `activation_ranges`."""
    from coremltools.optimize.coreml import _post_training_quantization as ptq

    original = ptq._get_activation_calibration_stats

    def ranges(fpmodel, sample_data, calibration_op_group_size=-1):
        return activation_ranges(fpmodel, sample_data)

    ptq._get_activation_calibration_stats = ranges
    try:
        yield
    finally:
        ptq._get_activation_calibration_stats = original


# -- int4 clipping ------------------------------------------------------------------------------
def clip_weights(mlmodel, sigmas: float, kept: set):
    """Every constant conv/linear weight not in `kept` clipped at `sigmas` standard deviations around
    its mean, per output channel (outliers otherwise pull 4-bit palettes away from the bulk)."""
    from coremltools.converters.mil.mil import Builder as mb
    from coremltools.converters.mil.mil.passes.graph_pass import AbstractGraphPass
    from coremltools.models.utils import _apply_graph_pass

    class ClipWeights(AbstractGraphPass):
        def apply(self, prog):
            function = prog.functions["main"]
            with function:
                for op in list(function.operations):
                    weight = op.inputs.get("weight") if op.op_type in WEIGHT_OPS else None
                    if op.name in kept or weight is None or weight.op is None or weight.op.op_type != "const":
                        continue
                    value = np.asarray(weight.val)
                    flat = value.reshape(value.shape[0], -1).astype(np.float32)
                    mean, std = flat.mean(1, keepdims=True), flat.std(1, keepdims=True)
                    clipped = np.clip(flat, mean - sigmas * std, mean + sigmas * std).reshape(value.shape)
                    with mb.set_before_op(op):
                        new = mb.const(val=clipped.astype(value.dtype), name=f"{weight.op.name}_clipped")
                    op.enclosing_block.replace_uses_of_var_after_op(
                        anchor_op=new.op, old_var=weight, new_var=new, end_op=op, no_check_var_types=True
                    )

    return _apply_graph_pass(mlmodel, ClipWeights(), skip_model_load=True)


def _main(mlmodel):
    program = getattr(mlmodel, "_mil_program", None)
    if program is None:
        raise UsageError("the Core ML model to compress has no ML program in memory; convert it again")
    return program.functions["main"]


def weight_statistics(mlmodel, kept: set) -> Dict:
    """What the compressed weights look like (fixture weights are Gaussian; trained weights have heavier
    tails): per layer std, largest |w| in standard deviations and excess kurtosis, summarised."""
    rows = []
    weights = {w: op for op, w in weight_layers(mlmodel)}
    for op in _main(mlmodel).operations:
        if op.op_type != "const" or op.name not in weights or weights[op.name] in kept:
            continue
        value = np.asarray(op.outputs[0].val, dtype=np.float64).reshape(-1)
        std = float(value.std()) or 1.0
        centred = (value - value.mean()) / std
        rows.append(
            {
                "layer": weights[op.name],
                "count": int(value.size),
                "std": std,
                "max_abs_sigmas": float(np.abs(centred).max()),
                "excess_kurtosis": float((centred**4).mean() - 3.0),
            }
        )
    if not rows:
        return {"layers": 0}
    kurtosis = [r["excess_kurtosis"] for r in rows]
    return {
        "layers": len(rows),
        "weights": int(sum(r["count"] for r in rows)),
        "median_excess_kurtosis": float(np.median(kurtosis)),
        "max_excess_kurtosis": float(np.max(kurtosis)),
        "median_max_abs_sigmas": float(np.median([r["max_abs_sigmas"] for r in rows])),
        "per_layer": rows,
    }
