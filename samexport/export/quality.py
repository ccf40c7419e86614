"""The quality floors every exported model is held to, and the one test against them.

Used by the ONNX check, the Core ML check (Core ML prediction or the NumPy evaluator) and
`samexport validate` alike. A floor is a dict of bars; `shortfalls` says what misses them, and
NaN/Inf values always miss (comparisons count them separately; see `compare`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List

from .compression import compression

if TYPE_CHECKING:  # numpy stays unloaded for option parsing and --help (targets register their runtimes)
    import numpy as np

FP16_MIN_PSNR_DB = 35.0
# Core ML may run an fp32 program on the GPU with reduced-precision accumulation.
FP32_DEVICE_MIN_PSNR_DB = 60.0
# Plain float32 arithmetic (onnxruntime, the NumPy evaluation of an fp32 program): 1e-4 of max |ref|.
FP32_MAX_REL = 1e-4
# Lossy weight compression (int8, palettization; int8 ONNX too) is held to one floor.
COMPRESSED_MIN_COSINE = 0.98
COMPRESSED_MIN_PSNR_DB = 20.0
# The grouped-palette and int8-activation modes are also held to what users see: the thresholded
# masks of encoder + decoder packages end to end against PyTorch's, per validation prompt.
COMPRESSED_MIN_MASK_IOU = 0.9

# How an export is run for its check: float32 CPU arithmetic held to 1e-4 of max |ref| (onnxruntime, the
# NumPy evaluator, LiteRT's XNNPACK CPU kernels: 2.6e-6 on the TinyViT encoder), or a runtime with its own
# kernels held to the device floor (Core ML on a device; Apple's Core AI runtime, whose reference CPU path
# sums a reduction in its own order: EfficientSAM's GroupNorm mean over 4M values drifts 3.3e-4 of max |ref|).
# PyTorch's runner and the NumPy evaluator compute in plain float32; each target declares which of its
# runners' runtimes do too (`ExportTarget.exact_runtimes`, added here as the target registers).
EXACT_RUNTIMES = {"numpy"}


def is_exact(runtime: str) -> bool:
    """Whether `runtime` computes in plain float32 CPU arithmetic (held to 1e-4 of max |ref|)."""
    return runtime in EXACT_RUNTIMES


# Raw IoU predictions are a handful of scores near 0..1, too few and too small for a PSNR to mean much
# in float16 (one 1e-3 rounding is 35 dB when the largest score is 0.06): held to an absolute bound.
FP16_RAW_SCORES_MAX_ABS = 0.01
# Outputs computed after hard-mask poolings summed over several frames (RAP-SAM's tube head: up to 5 x h x w
# pixels per query and stage, sums of 1e5): a float32 runtime sums them in its own order, and LiteRT's
# XNNPACK came out at 1.3e-4 of max |ref| on 5 frames at 256x352 (onnxruntime 2.9e-6 at 736x992). Held to
# the bar RAP-SAM's parity with the official panoptic outputs uses, 1e-3 of max |ref|.
FP32_POOLED_MAX_REL = 1e-3
# What a part's output may declare as its floor kind (`parts.Tensor.floor`).
FLOOR_KINDS = ("default", "raw_scores", "predicted_iou", "pooled_over_frames")


def floor_for(precision: str, compress: str, runtime: str) -> Dict:
    """The floor for an export of `precision`/`compress` run by `runtime` (onnxruntime, numpy, coreml)."""
    mode = compression(compress)
    if mode.lossy:
        floor = {
            "min_cosine": COMPRESSED_MIN_COSINE,
            "min_psnr_db": COMPRESSED_MIN_PSNR_DB,
            "why": f"{compress} is lossy; the floor catches a broken model, not rounding",
        }
        if mode.new_style:
            floor["min_mask_iou"] = COMPRESSED_MIN_MASK_IOU
        return floor
    if precision == "fp16":
        return {"min_psnr_db": FP16_MIN_PSNR_DB}
    if is_exact(runtime):
        return {"max_rel": FP32_MAX_REL}
    return {"min_psnr_db": FP32_DEVICE_MIN_PSNR_DB}


def output_floor(kind: str, precision: str, compress: str, runtime: str) -> Dict:
    """The floor of one output of kind `kind` (FLOOR_KINDS): raw scores by an absolute bound wherever the
    floor would be a PSNR (float16, or a runtime with its own kernels: RAP-SAM's '8 seeded clicks' IoU came
    out at 57.2 dB on Core AI's reference CPU path at 800x1088, a handful of scores near 0); predicted IoU
    of an int8 ONNX graph (dynamic quantization) is reported, not held."""
    if kind not in FLOOR_KINDS:
        raise ValueError(f"unknown floor kind {kind!r}; one of {', '.join(FLOOR_KINDS)}")
    by_psnr = precision == "fp16" or not is_exact(runtime)
    if kind == "raw_scores" and by_psnr and not compression(compress).lossy:
        return {"max_abs": FP16_RAW_SCORES_MAX_ABS}
    if kind == "pooled_over_frames" and not by_psnr and not compression(compress).lossy:
        return {"max_rel": FP32_POOLED_MAX_REL}
    if kind == "predicted_iou" and compression(compress).lossy and runtime == "onnxruntime":
        return {"why": "int8 ONNX predicted IoU is reported, not held (dynamic quantization of the IoU head)"}
    return floor_for(precision, compress, runtime)


def part_floors(interface, precision: str, compress: str, runtime: str) -> Dict[str, Dict]:
    """output -> floor for every output of a part (`parts.Interface`)."""
    return {t.name: output_floor(t.floor, precision, compress, runtime) for t in interface.outputs}


def shortfalls(result: Dict, floor: Dict) -> List[str]:
    """What in one comparison (see `compare`) misses the floor, in words (empty when it passes)."""
    misses = []
    if result["non_finite"]:
        misses.append(f"{result['non_finite']} NaN/Inf values")
    if "min_psnr_db" in floor and not result["psnr_db"] >= floor["min_psnr_db"]:
        misses.append(f"PSNR {result['psnr_db']:.1f} dB < {floor['min_psnr_db']} dB")
    if "min_cosine" in floor and not result["cosine"] >= floor["min_cosine"]:
        misses.append(f"cosine {result['cosine']:.3f} < {floor['min_cosine']}")
    if "max_rel" in floor and not result["rel"] <= floor["max_rel"]:
        misses.append(f"max error {result['rel']:.2e} of max |ref| > {floor['max_rel']:.0e}")
    if "max_abs" in floor and not result["max_abs"] <= floor["max_abs"]:
        misses.append(f"max error {result['max_abs']:.2e} > {floor['max_abs']:g}")
    return misses


def floor_text(floor: Dict) -> str:
    parts = []
    if "min_psnr_db" in floor:
        parts.append(f"PSNR >= {floor['min_psnr_db']} dB")
    if "min_cosine" in floor:
        parts.append(f"cosine >= {floor['min_cosine']}")
    if "max_rel" in floor:
        parts.append(f"max error <= {floor['max_rel']:.0e} of max |ref|")
    if "max_abs" in floor:
        parts.append(f"max error <= {floor['max_abs']:g}")
    if "min_mask_iou" in floor:
        parts.append(f"end-to-end mask IoU >= {floor['min_mask_iou']}")
    if "why" in floor and len(parts) == 0:
        parts.append(floor["why"])
    return ", ".join(parts + ["no NaN/Inf"])


def threshold_margin(floors: Dict[str, Dict]) -> float:
    """How close to a hard threshold, as a fraction of the largest |logit| there, an export that meets
    `floors` may decide a pixel the other way than PyTorch: the error its strictest relative bar allows
    (max_rel itself, or the amplitude a PSNR bar allows)."""
    bars = [f["max_rel"] for f in floors.values() if "max_rel" in f]
    bars += [10 ** (-f["min_psnr_db"] / 20) for f in floors.values() if "min_psnr_db" in f]
    return min(bars) if bars else 10 ** (-COMPRESSED_MIN_PSNR_DB / 20)


def hard_mask_agreement(masks: List["np.ndarray"], logits: List["np.ndarray"], margin: float) -> Dict:
    """The export's hard masks against PyTorch's decisions on the same logits (sigmoid(logits) > 0.5): a
    pixel decided the other way is a rounding flip when its logit is within `margin` x max |logit| of 0;
    a flip farther out is an export that computes something else."""
    import numpy as np

    pixels = flipped = 0
    farthest = 0.0
    for mask, logit in zip(masks, logits):
        logit = np.asarray(logit, dtype=np.float64)
        own = 1 / (1 + np.exp(-logit.astype(np.float32))) > 0.5
        differ = own != np.asarray(mask, dtype=bool)
        pixels += differ.size
        flipped += int(differ.sum())
        scale = float(np.abs(logit).max()) or 1.0
        if differ.any():
            farthest = max(farthest, float(np.abs(logit[differ]).max()) / scale)
    return {
        "masks": len(masks),
        "pixels": pixels,
        "flipped": flipped,
        "flipped_max_logit_rel": farthest,
        "margin": margin,
        "passed": farthest <= margin,
    }
