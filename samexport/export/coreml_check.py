"""Numeric check of Core ML packages against PyTorch.

A package runs either through Core ML prediction (macOS on Apple silicon) or through the NumPy
evaluation of its saved ML program (`samexport.mileval`, any platform). Both get the same inputs,
are compared with the same PyTorch references and fill the same manifest fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from ..coreml_package import CoreMLPackage
from ..errors import SamExportError, UsageError
from ..families import Family
from ..platforms import is_apple_silicon
from . import coreml_export
from .compare import compare, worst
from .quality import shortfalls
from .reference import prompt_batch

METHODS = ("auto", "coreml", "numpy")
SYNTHETIC_SEED = 0


def resolve_method(method: str) -> str:
    if method not in METHODS:
        raise UsageError(f"unknown --method {method!r}; choose one of: {', '.join(METHODS)}")
    if method == "auto":
        return "coreml" if is_apple_silicon() else "numpy"
    if method == "coreml":
        coreml_export.require_prediction()
    return method


@dataclass
class EncoderCase:
    """One encoder input and PyTorch's embeddings for exactly those pixels."""

    feed: np.ndarray  # (1, 3, 1024, 1024) float32: 0..255 pixels for an image input, else normalized
    image_input: bool
    embeddings: np.ndarray  # PyTorch on exactly these pixels


def encoder_case(model, image: np.ndarray, image_input: bool) -> EncoderCase:
    """The encoder's feed for the validation image and PyTorch's embeddings for exactly those pixels:
    for an image input the app's 8-bit canvas (letterbox included), else the official tensor."""
    family: Family = model.spec.family
    if image_input:
        feed, embeddings = canvas_features(model, family.app_canvas(image))
        return EncoderCase(feed, image_input, embeddings)
    tensor = model.preprocess(image)
    with torch.no_grad():
        embeddings = model.image_encoder(tensor).numpy()
    return EncoderCase(tensor.numpy().astype(np.float32), image_input, embeddings)


def canvas_features(model, canvas: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """An app's HxWx3 uint8 canvas as a Core ML image input receives it ((1, 3, H, W) float32 0..255) and
    the model's encoder output for exactly those pixels (normalised with the family's statistics)."""
    family: Family = model.spec.family
    pixels = torch.as_tensor(canvas).permute(2, 0, 1)[None].float()
    mean = torch.tensor(family.pixel_mean_255).view(1, 3, 1, 1)
    std = torch.tensor(family.pixel_std_255).view(1, 3, 1, 1)
    with torch.no_grad():
        embeddings = model.image_encoder((pixels - mean) / std)
    return pixels.numpy().astype(np.float32), embeddings.numpy()


@dataclass
class DecoderCase:
    """One decoder prompt: the packed feeds and PyTorch's masks and IoU scores for it."""

    name: str
    tokens: int
    feeds: Dict[str, np.ndarray]
    masks: np.ndarray
    iou: np.ndarray


def decoder_cases(
    model, embeddings: torch.Tensor, prompts, token_counts: List[int], batch_sizes: Sequence[int] = (1,)
) -> List[DecoderCase]:
    """The validation prompts the package takes, seeded clicks for every declared token count they miss,
    and one case of several prompt sets for every batch size above 1."""
    family: Family = model.spec.family
    signature = family.decoder_signature(token_counts, batch_sizes)
    # a validation prompt of a token count the package does not take cannot be fed to it
    prompts = [p for p in prompts if int(p[1].shape[1]) in signature.token_counts] + [
        prompt_batch(model, embeddings, signature.default_tokens, b) for b in signature.batch_sizes if b > 1
    ]
    covered = {int(coords.shape[1]) for _, coords, _, _ in prompts}
    rng = np.random.default_rng(SYNTHETIC_SEED)
    for n in token_counts:
        if n in covered:
            continue
        clicks = family.clicks_filling(n)
        coords = rng.uniform(0, 1024, (1, n, 2))
        labels = np.concatenate([rng.integers(0, 2, clicks), -np.ones(n - clicks)])[None]
        coords[:, clicks:] = 0.0
        prompts.append(
            (
                f"{clicks} seeded clicks",
                torch.tensor(coords, dtype=torch.float32),
                torch.tensor(labels, dtype=torch.float32),
                None,
            )
        )
    cases = []
    for name, coords, labels, mask in prompts:
        with torch.no_grad():
            masks, iou = model.decode(embeddings, coords, labels, mask_input=mask)
        feeds = signature.feeds(embeddings.numpy(), coords, labels, mask, packed=True)
        cases.append(DecoderCase(name, int(coords.shape[1]), feeds, masks.numpy(), iou.numpy()))
    return cases


# -- running a package -------------------------------------------------------------------------
class CoreMLRunner:
    """Core ML prediction, the package compiled once (macOS on Apple silicon)."""

    def __init__(self, package: CoreMLPackage, compute_units: str = "ALL") -> None:
        coreml_export.require_prediction()
        self.package, self.compute_units = package, compute_units
        self.models: Dict[str, object] = {}
        self.description = f"Core ML prediction (compute units {compute_units})"
        self.image_inputs = {f["name"] for f in package.io["inputs"] if f["kind"] == "image"}

    def run(self, feeds: Dict[str, np.ndarray]) -> Tuple[Dict[str, np.ndarray], Dict]:
        from PIL import Image

        function = self.package.function_for(
            {k: np.shape(v) for k, v in feeds.items() if k not in self.image_inputs}
        )
        if function not in self.models:
            chosen = function if len(self.package.functions) > 1 else None
            self.models[function] = coreml_export.load_for_prediction(
                self.package.path, self.compute_units, chosen
            )

        feeds = {
            k: Image.fromarray(v[0].transpose(1, 2, 0).round().astype(np.uint8))
            if k in self.image_inputs
            else v
            for k, v in feeds.items()
        }
        return coreml_export.predict(self.models[function], feeds), {}


class NumpyRunner:
    """The saved ML program evaluated op by op; fp16 programs also in float32 as a tolerance reference."""

    def __init__(self, package: CoreMLPackage, fp32_reference: bool = True) -> None:
        from ..mileval import load_program

        self.package = package
        self.program = load_program(package)
        self.programs = {package.function: self.program}
        self.fp16 = self.program.is_fp16()
        self.fp32_reference = fp32_reference
        self.description = (
            "NumPy evaluation of the saved ML program (samexport.mileval), fp16 values rounded "
            "where the program declares fp16"
            if self.fp16
            else "NumPy evaluation of the saved ML program (samexport.mileval), float32"
        )

    def run(self, feeds: Dict[str, np.ndarray]) -> Tuple[Dict[str, np.ndarray], Dict]:
        from ..mileval import evaluate, load_program

        function = self.package.function_for({k: np.shape(v) for k, v in feeds.items()})
        if function not in self.programs:
            self.programs[function] = load_program(CoreMLPackage(self.package.path, function))
        program = self.programs[function]
        names, masks = program.hard_masks(), {}
        observe = (
            (lambda name, value: masks.__setitem__(name, value) if name in names else None) if names else None
        )
        evaluation = evaluate(program, feeds, "program", observe=observe)
        extras = {"evaluation": evaluation.summary()}
        if names:
            extras["hard_masks"] = [np.asarray(masks[name], dtype=bool) for name in names]
        if self.fp16 and self.fp32_reference:
            extras["fp32_outputs"] = evaluate(program, feeds, "fp32").outputs
        return evaluation.outputs, extras


def make_runner(package: CoreMLPackage, method: str):
    return CoreMLRunner(package) if method == "coreml" else NumpyRunner(package)


def _with_fp32(result: Dict, extras: Dict, name: str, reference: np.ndarray) -> Dict:
    if "fp32_outputs" in extras:
        result["fp32_evaluation"] = compare(extras["fp32_outputs"][name], reference)
    return result


def check_encoder(
    package: CoreMLPackage, case: EncoderCase, method: str, floor: Dict, keep: Dict | None = None
) -> Dict:
    """The report; `keep`, when given, receives the package's embeddings (for `check_masks`)."""
    runner = make_runner(package, method)
    outputs, extras = runner.run({"image": case.feed})
    if keep is not None:
        keep["imageEmbeddings"] = outputs["imageEmbeddings"]
    result = _with_fp32(
        compare(outputs["imageEmbeddings"], case.embeddings), extras, "imageEmbeddings", case.embeddings
    )
    report = {"method": runner.description, "floor": floor, "imageEmbeddings": result}
    if "evaluation" in extras:
        report["evaluation"] = extras["evaluation"]
    report["failures"] = [
        f"imageEmbeddings: {', '.join(m)}{failure_origin(extras)}" for m in [shortfalls(result, floor)] if m
    ]
    report["passed"] = not report["failures"]
    return report


def check_decoder(package: CoreMLPackage, cases: List[DecoderCase], method: str, floor: Dict) -> Dict:
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
                failures.append(
                    f"{output} for '{case.name}' ({case.tokens} tokens): {', '.join(misses)}"
                    f"{failure_origin(extras)}"
                )
    shapes = {}
    for n in sorted({c.tokens for c in cases}):
        shapes[str(n)] = worst({k: v["lowResMasks"] for k, v in results.items() if v["tokens"] == n})
    report = {
        "method": runner.description,
        "floor": floor,
        "cases": results,
        "token_counts": shapes,
        "worst_masks": worst({k: v["lowResMasks"] for k, v in results.items()}),
        "worst_iou": worst({k: v["iouScores"] for k, v in results.items()}),
    }
    if isinstance(runner, NumpyRunner):
        report["evaluation"] = {"seconds": round(seconds, 2), "fp16_peak": peak}
    report["failures"] = failures
    report["passed"] = not failures
    return report


def case_runner(package: CoreMLPackage, method: str):
    """`run(feeds) -> (outputs, extras)` for `quality.check_cases`, with the evaluator's fp32 outputs and
    where it saw the first overflow or NaN/Inf."""
    runner = make_runner(package, method)
    return runner.description, runner.run


def failure_origin(extras: Dict) -> str:
    """Where the evaluator saw the first NaN/Inf or fp16 overflow, for the failure line."""
    evaluation = extras.get("evaluation") or {}
    parts = []
    for overflow in evaluation.get("fp16_overflows", [])[:1]:
        parts.append(
            f"fp16 overflow in {overflow['type']} op '{overflow['op']}' (|x| reached "
            f"{overflow['max_abs']:.3g} > 65504)"
        )
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


def mask_iou(ours: np.ndarray, theirs: np.ndarray) -> float:
    """The worst IoU over mask tokens of two (B, T, H, W) boolean stacks (two empty masks agree: 1)."""
    axes = (-2, -1)
    inter = np.logical_and(ours, theirs).sum(axes)
    union = np.logical_or(ours, theirs).sum(axes)
    return float(np.where(union > 0, inter / np.maximum(union, 1), 1.0).min())


def check_masks(
    decoder: CoreMLPackage,
    model,
    case: EncoderCase,
    embeddings: np.ndarray,
    prompts,
    token_counts: List[int],
    method: str,
    min_iou: float | None,
) -> Dict:
    """What users see: the packages end to end (the encoder package's `embeddings` through the decoder
    package) against PyTorch on the same pixels, masks thresholded at 0, IoU per validation prompt."""
    cases = decoder_cases(model, torch.from_numpy(case.embeddings), prompts, token_counts)
    runner = CoreMLRunner(decoder) if method == "coreml" else NumpyRunner(decoder, fp32_reference=False)
    per_prompt = {}
    for c in cases:
        outputs, _ = runner.run({**c.feeds, "imageEmbeddings": embeddings})
        per_prompt[c.name] = mask_iou(outputs["lowResMasks"] > 0, c.masks > 0)
    worst_name = min(per_prompt, key=per_prompt.get)
    report = {
        "what": "IoU of thresholded low-res masks (worst mask token), packages end to end vs PyTorch",
        "min_iou": min_iou,
        "per_prompt": per_prompt,
        "worst": per_prompt[worst_name],
    }
    report["failures"] = (
        [f"mask IoU {per_prompt[worst_name]:.3f} < {min_iou} for '{worst_name}'"]
        if min_iou is not None and per_prompt[worst_name] < min_iou
        else []
    )
    report["passed"] = not report["failures"]
    return report
