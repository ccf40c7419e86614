"""Numeric check of Core ML packages against PyTorch.

A package runs either through Core ML prediction (macOS on Apple silicon) or through the NumPy
evaluation of its saved ML program (`samexport.mileval`, any platform). Both get the same inputs,
are compared with the same PyTorch references and fill the same manifest fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch

from .. import transforms
from ..errors import SamExportError, UsageError
from ..registry import ModelSpec
from . import coreml_export
from .compare import compare, worst
from .wrappers import decoder_feeds

METHODS = ("auto", "coreml", "numpy")
FP16_MIN_PSNR_DB = 35.0
# Core ML may run an fp32 program on the GPU with reduced-precision accumulation.
FP32_DEVICE_MIN_PSNR_DB = 60.0
# The NumPy evaluation of an fp32 program is plain float32 arithmetic: held to the bar fp32 ONNX has.
FP32_EVAL_MAX_REL = 1e-4
# Lossy weight compression (int8, palettization; int8 ONNX too) is held to one floor.
COMPRESSED_MIN_COSINE = 0.98
COMPRESSED_MIN_PSNR_DB = 20.0
SYNTHETIC_SEED = 0


def resolve_method(method: str) -> str:
    if method not in METHODS:
        raise UsageError(f"unknown --method {method!r}; choose one of: {', '.join(METHODS)}")
    if method == "auto":
        return "coreml" if coreml_export.can_predict() else "numpy"
    if method == "coreml":
        coreml_export.require_prediction()
    return method


def floor_for(precision: str, compress: str, method: str) -> Dict:
    if compress != "none":
        return {"min_cosine": COMPRESSED_MIN_COSINE, "min_psnr_db": COMPRESSED_MIN_PSNR_DB,
                "why": f"{compress} weights are lossy; the floor catches a broken model, not rounding"}
    if precision == "fp16":
        return {"min_psnr_db": FP16_MIN_PSNR_DB}
    if method == "numpy":
        return {"max_rel": FP32_EVAL_MAX_REL}
    return {"min_psnr_db": FP32_DEVICE_MIN_PSNR_DB}


def shortfalls(result: Dict, floor: Dict) -> List[str]:
    """What in one comparison misses the floor, in words (empty when it passes)."""
    misses = []
    if result["non_finite"]:
        misses.append(f"{result['non_finite']} NaN/Inf values")
    if "min_psnr_db" in floor and not result["psnr_db"] >= floor["min_psnr_db"]:
        misses.append(f"PSNR {result['psnr_db']:.1f} dB < {floor['min_psnr_db']} dB")
    if "min_cosine" in floor and not result["cosine"] >= floor["min_cosine"]:
        misses.append(f"cosine {result['cosine']:.3f} < {floor['min_cosine']}")
    if "max_rel" in floor and not result["rel"] <= floor["max_rel"]:
        misses.append(f"max error {result['rel']:.2e} of max |ref| > {floor['max_rel']:.0e}")
    return misses


# -- inputs and references ----------------------------------------------------------------------
def pixel_stats(spec: ModelSpec) -> Tuple[List[float], List[float]]:
    """Mean and std on the 0..255 pixel scale, the scale a Core ML ImageType delivers."""
    if spec.style == "sam":
        return list(transforms.SAM_PIXEL_MEAN), list(transforms.SAM_PIXEL_STD)
    return ([255 * m for m in transforms.EFFICIENT_SAM_PIXEL_MEAN],
            [255 * s for s in transforms.EFFICIENT_SAM_PIXEL_STD])


def app_canvas(spec: ModelSpec, image: np.ndarray) -> np.ndarray:
    """The 1024x1024 uint8 RGB picture an app hands the image input (letterbox fill: rounded mean)."""
    from PIL import Image

    if spec.style != "sam":
        return np.array(Image.fromarray(image).resize((1024, 1024), Image.BILINEAR))
    h, w = image.shape[:2]
    new_h, new_w = transforms.longest_side_shape(h, w)
    fill = np.array([round(m) for m in transforms.SAM_PIXEL_MEAN], dtype=np.uint8)
    canvas = np.broadcast_to(fill, (1024, 1024, 3)).copy()
    canvas[:new_h, :new_w] = np.array(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))
    return canvas


@dataclass
class EncoderCase:
    feed: np.ndarray  # (1, 3, 1024, 1024) float32: 0..255 pixels for an image input, else normalized
    image_input: bool
    embeddings: np.ndarray  # PyTorch on exactly these pixels


def encoder_case(model, spec: ModelSpec, image: np.ndarray, image_input: bool) -> EncoderCase:
    if image_input:
        pixels = torch.as_tensor(app_canvas(spec, image)).permute(2, 0, 1)[None].float()
        mean_255, std_255 = pixel_stats(spec)
        tensor = (pixels - torch.tensor(mean_255).view(1, 3, 1, 1)) / torch.tensor(std_255).view(1, 3, 1, 1)
        feed = pixels
    else:
        tensor = feed = model.preprocess(image)
    with torch.no_grad():
        embeddings = model.image_encoder(tensor).numpy()
    return EncoderCase(feed.numpy().astype(np.float32), image_input, embeddings)


@dataclass
class DecoderCase:
    name: str
    tokens: int
    feeds: Dict[str, np.ndarray]
    masks: np.ndarray
    iou: np.ndarray


def decoder_cases(model, spec: ModelSpec, embeddings: torch.Tensor, prompts, token_counts: List[int]) -> List[DecoderCase]:
    """The validation prompts, plus seeded clicks for every declared token count they miss."""
    prompts = list(prompts)
    covered = {int(coords.shape[1]) for _, coords, _, _ in prompts}
    rng = np.random.default_rng(SYNTHETIC_SEED)
    for n in token_counts:
        if n in covered:
            continue
        clicks = n - 1 if spec.style == "sam" else n  # SAM: clicks + one padding token
        coords = rng.uniform(0, 1024, (1, n, 2))
        labels = np.concatenate([rng.integers(0, 2, clicks), -np.ones(n - clicks)])[None]
        coords[:, clicks:] = 0.0
        prompts.append((f"{clicks} seeded clicks", torch.tensor(coords, dtype=torch.float32),
                        torch.tensor(labels, dtype=torch.float32), None))
    cases = []
    for name, coords, labels, mask in prompts:
        with torch.no_grad():
            masks, iou = model.decode(embeddings, coords, labels, mask_input=mask)
        feeds = decoder_feeds(spec, embeddings.numpy(), coords, labels, mask, packed=True)
        cases.append(DecoderCase(name, int(coords.shape[1]), feeds, masks.numpy(), iou.numpy()))
    return cases


# -- running a package -------------------------------------------------------------------------
class CoreMLRunner:
    """Core ML prediction, the package compiled once (macOS on Apple silicon)."""

    def __init__(self, package: Path, compute_units: str = "ALL") -> None:
        self.model = coreml_export.load_for_prediction(package, compute_units)
        self.description = f"Core ML prediction (compute units {compute_units})"
        self.image_inputs = {f["name"] for f in coreml_export.describe_io(package)["inputs"] if f["kind"] == "image"}

    def run(self, feeds: Dict[str, np.ndarray]) -> Tuple[Dict[str, np.ndarray], Dict]:
        from PIL import Image

        feeds = {k: Image.fromarray(v[0].transpose(1, 2, 0).round().astype(np.uint8)) if k in self.image_inputs
                 else v for k, v in feeds.items()}
        return coreml_export.predict(self.model, feeds), {}


class NumpyRunner:
    """The saved ML program evaluated op by op; fp16 programs also in float32 as a tolerance reference."""

    def __init__(self, package: Path) -> None:
        from ..mileval import load_program

        self.program = load_program(package)
        self.fp16 = self.program.is_fp16()
        self.description = ("NumPy evaluation of the saved ML program (samexport.mileval), fp16 values rounded "
                            "where the program declares fp16" if self.fp16 else
                            "NumPy evaluation of the saved ML program (samexport.mileval), float32")

    def run(self, feeds: Dict[str, np.ndarray]) -> Tuple[Dict[str, np.ndarray], Dict]:
        from ..mileval import evaluate

        evaluation = evaluate(self.program, feeds, "program")
        extras = {"evaluation": evaluation.summary()}
        if self.fp16:
            extras["fp32_outputs"] = evaluate(self.program, feeds, "fp32").outputs
        return evaluation.outputs, extras


def make_runner(package: Path, method: str):
    return CoreMLRunner(package) if method == "coreml" else NumpyRunner(package)


def _with_fp32(result: Dict, extras: Dict, name: str, reference: np.ndarray) -> Dict:
    if "fp32_outputs" in extras:
        result["fp32_evaluation"] = compare(extras["fp32_outputs"][name], reference)
    return result


def check_encoder(package: Path, case: EncoderCase, method: str, floor: Dict) -> Dict:
    runner = make_runner(package, method)
    outputs, extras = runner.run({"image": case.feed})
    result = _with_fp32(compare(outputs["imageEmbeddings"], case.embeddings), extras, "imageEmbeddings",
                        case.embeddings)
    report = {"method": runner.description, "floor": floor, "imageEmbeddings": result}
    if "evaluation" in extras:
        report["evaluation"] = extras["evaluation"]
    report["failures"] = [f"imageEmbeddings: {', '.join(m)}{_origin(extras)}"
                          for m in [shortfalls(result, floor)] if m]
    report["passed"] = not report["failures"]
    return report


def check_decoder(package: Path, cases: List[DecoderCase], method: str, floor: Dict) -> Dict:
    runner = make_runner(package, method)
    results, failures, seconds, peak = {}, [], 0.0, {}
    for case in cases:
        outputs, extras = runner.run(case.feeds)
        masks = _with_fp32(compare(outputs["lowResMasks"], case.masks), extras, "lowResMasks", case.masks)
        iou = _with_fp32(compare(outputs["iouScores"], case.iou), extras, "iouScores", case.iou)
        results[case.name] = {"tokens": case.tokens, "lowResMasks": masks, "iouScores": iou}
        evaluation = extras.get("evaluation")
        if evaluation:
            results[case.name]["first_non_finite"] = evaluation["first_non_finite"]
            seconds += evaluation["seconds"]
            if evaluation["fp16_peak"].get("max_abs", -1) > peak.get("max_abs", -1):
                peak = evaluation["fp16_peak"]
        for output, result in (("lowResMasks", masks), ("iouScores", iou)):
            misses = shortfalls(result, floor)
            if misses:
                failures.append(f"{output} for '{case.name}' ({case.tokens} tokens): {', '.join(misses)}"
                                f"{_origin(extras)}")
    shapes = {}
    for n in sorted({c.tokens for c in cases}):
        shapes[str(n)] = worst({k: v["lowResMasks"] for k, v in results.items() if v["tokens"] == n})
    report = {"method": runner.description, "floor": floor, "cases": results, "token_counts": shapes,
              "worst_masks": worst({k: v["lowResMasks"] for k, v in results.items()}),
              "worst_iou": worst({k: v["iouScores"] for k, v in results.items()})}
    if isinstance(runner, NumpyRunner):
        report["evaluation"] = {"seconds": round(seconds, 2), "fp16_peak": peak}
    report["failures"] = failures
    report["passed"] = not failures
    return report


def _origin(extras: Dict) -> str:
    """Where the evaluator saw the first NaN/Inf or fp16 overflow, for the failure line."""
    evaluation = extras.get("evaluation") or {}
    parts = []
    for overflow in evaluation.get("fp16_overflows", [])[:1]:
        parts.append(f"fp16 overflow in {overflow['type']} op '{overflow['op']}' (|x| reached "
                     f"{overflow['max_abs']:.3g} > 65504)")
    first = evaluation.get("first_non_finite")
    if first and not parts:
        parts.append(f"first NaN/Inf from {first['type']} op '{first['op']}'")
    return f" ({'; '.join(parts)})" if parts else ""


def failure_line(part: str, report: Dict) -> str:
    extra = f" (+{len(report['failures']) - 1} more)" if len(report["failures"]) > 1 else ""
    return f"Core ML {part} fails the numeric check: {report['failures'][0]}{extra}"


def raise_if_failed(part: str, report: Dict, suffix: str = "") -> None:
    if not report["passed"]:
        raise SamExportError(failure_line(part, report) + suffix)

