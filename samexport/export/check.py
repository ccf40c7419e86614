"""The one check path: any exported part, run by any runner, against the official PyTorch model.

`check_part` runs a part's validation cases (`parts.Part.cases`) and holds each output to its floor
(`quality.part_floors`); `check_chain` runs a downstream part on an upstream export's own output (what
users see end to end: thresholded masks, for compressed modes). Reports are dataclasses, written into
manifests as `to_json()` and printed by `render` — by `convert`, `validate` and the benchmarks alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..errors import SamExportError
from ..parts import Part
from ..runtime import Runner
from .compare import compare, worst
from .quality import floor_text, hard_mask_agreement, shortfalls, threshold_margin


@dataclass
class ChainReport:
    """An upstream export's output through a downstream export, thresholded, against PyTorch's masks."""

    what: str
    min_iou: Optional[float]
    per_case: Dict[str, float]
    failures: List[str]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def worst(self) -> float:
        return min(self.per_case.values())

    def to_json(self) -> Dict:
        return {
            "what": self.what,
            "min_iou": self.min_iou,
            "per_case": self.per_case,
            "worst": self.worst,
            "failures": self.failures,
            "passed": self.passed,
        }


@dataclass
class PartReport:
    """One exported part against PyTorch: every case, every output, the floors, what failed."""

    part: str
    runner: str
    floors: Dict[str, Dict]
    cases: Dict[str, Dict[str, Dict]]  # case -> output -> comparison (and `hard_masks`)
    failures: List[str]
    evaluation: Optional[Dict] = None  # the NumPy evaluator: seconds, largest fp16 value
    chain: Optional[ChainReport] = None
    # the part's module on a simulated float16 device (`float16_device`), for files a device runs in float16
    float16_device: Optional["PartReport"] = None

    @property
    def passed(self) -> bool:
        return not self.all_failures

    @property
    def all_failures(self) -> List[str]:
        simulated = self.float16_device.failures if self.float16_device else []
        return (
            self.failures
            + (self.chain.failures if self.chain else [])
            + [f"on a float16 device (simulated), {failure}" for failure in simulated]
        )

    def worst(self) -> Dict[str, Dict]:
        """output -> the worst of each metric over the cases (outputs no case measured: left out)."""
        outputs = [o for o in sorted(self.floors) if any(o in r for r in self.cases.values())]
        return {o: worst({n: r[o] for n, r in self.cases.items() if o in r}) for o in outputs}

    def to_json(self) -> Dict:
        data = {
            "runner": self.runner,
            "floors": self.floors,
            "cases": self.cases,
            "worst": self.worst(),
            "failures": self.all_failures,
            "passed": self.passed,
        }
        if self.evaluation:
            data["evaluation"] = self.evaluation
        if self.chain:
            data["end_to_end"] = self.chain.to_json()
        if self.float16_device:
            data["float16_device"] = self.float16_device.to_json()
        return data

    def raise_if_failed(
        self, target_title: str, suffix: str = "; nothing was written", option_hint: str = ""
    ) -> None:
        failures = self.all_failures
        if failures:
            more = f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""
            simulated = self.float16_device is not None and bool(self.float16_device.failures)
            hint = f" ({option_hint})" if simulated and option_hint else ""
            raise SamExportError(
                f"{target_title} {self.part} falls below the quality floor: {failures[0]}{more}{hint}{suffix}"
            )


@dataclass
class TargetReport:
    """Every part of one target's export."""

    target: str
    parts: Dict[str, PartReport] = field(default_factory=dict)
    reference: str = "unfused PyTorch model"

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.parts.values())

    def to_json(self) -> Dict:
        return {
            "reference": self.reference,
            **{p: r.to_json() for p, r in self.parts.items()},
            "passed": self.passed,
        }


def check_part(part: Part, runner: Runner, floors: Dict[str, Dict]) -> PartReport:
    """Run every validation case of `part` through `runner`, each output held to `floors[output]`.

    A part that pools under hard masks (RAP-SAM's heads) has `recompute`, and its runner returns the
    export's masks (`extras["hard_masks"]`): the reference is then PyTorch under the export's own masks, so
    a pixel within rounding of the threshold, decided one way by one CPU's kernels and the other way by
    another's, does not decide the verdict; the masks themselves must agree with PyTorch's decisions except
    within `threshold_margin` of the threshold (`quality.hard_mask_agreement`)."""
    results: Dict[str, Dict] = {}
    failures: List[str] = []
    seconds, peak, overflows = 0.0, {}, 0
    varying = part.interface.varying()
    for name, feeds, expected in part.cases(None):
        outputs, extras = runner.run(feeds)
        results[name] = (
            {"inputs": {k: list(np.shape(feeds[k])) for k in varying if k in feeds}} if varying else {}
        )
        if part.recompute is not None and extras.get("hard_masks"):
            expected, logits = part.recompute(name, extras["hard_masks"])
            agreement = hard_mask_agreement(extras["hard_masks"], logits, threshold_margin(floors))
            results[name]["hard_masks"] = agreement
            if not agreement["passed"]:
                failures.append(
                    f"hard masks for '{name}': {agreement['flipped']} of {agreement['pixels']} pixels "
                    f"decided otherwise than PyTorch, up to {agreement['flipped_max_logit_rel']:.2e} of "
                    f"max |logit| from the threshold (rounding reaches {agreement['margin']:.0e})"
                )
        for output, reference in expected.items():
            result = compare(outputs[output], reference)
            if "fp32_outputs" in extras:
                result["fp32_evaluation"] = compare(extras["fp32_outputs"][output], reference)
            results[name][output] = result
            misses = shortfalls(result, floors[output])
            if misses:
                failures.append(f"{output} for '{name}': {', '.join(misses)}{runner.origin(extras)}")
        evaluation = extras.get("evaluation")
        if evaluation:
            seconds += evaluation["seconds"]
            overflows += evaluation.get("fp16_overflow_count", 0)
            if evaluation["fp16_peak"].get("max_abs", -1) > peak.get("max_abs", -1):
                peak = evaluation["fp16_peak"]
            if evaluation.get("first_non_finite"):
                results[name]["first_non_finite"] = evaluation["first_non_finite"]
    evaluated = (
        {"seconds": round(seconds, 2), "fp16_peak": peak, "fp16_overflow_count": overflows}
        if seconds
        else None
    )
    return PartReport(part.name, runner.description, floors, results, failures, evaluated)


def mask_iou(ours: np.ndarray, theirs: np.ndarray) -> float:
    """The worst IoU over the leading axes of two (..., H, W) boolean stacks (two empty masks agree: 1)."""
    axes = (-2, -1)
    inter = np.logical_and(ours, theirs).sum(axes)
    union = np.logical_or(ours, theirs).sum(axes)
    return float(np.where(union > 0, inter / np.maximum(union, 1), 1.0).min())


def check_chain(
    upstream_part: Part, upstream_runner: Runner, part: Part, runner: Runner, min_iou: Optional[float]
) -> ChainReport:
    """What users see: `upstream_part`'s export output on its first case fed to `part`'s export (inputs the
    interface says come from it), against PyTorch on the same pixels, thresholded outputs compared by IoU."""
    name, feeds, expected = upstream_part.cases(None)[0]
    outputs, _ = upstream_runner.run(feeds)
    links = {i: o for i, o in ((i, upstream_part.interface.output_names[0]) for i in part.interface.upstream)}
    torch_values = {i: expected[o] for i, o in links.items()}
    export_values = {i: outputs[o] for i, o in links.items()}
    thresholded = [t for t in part.interface.outputs if t.threshold is not None]
    per_case = {}
    for case_name, case_feeds, case_expected in part.cases(torch_values):
        got, _ = runner.run({**case_feeds, **export_values})
        per_case[case_name] = min(
            mask_iou(np.asarray(got[t.name]) > t.threshold, case_expected[t.name] > t.threshold)
            for t in thresholded
        )
    worst_name = min(per_case, key=per_case.get)
    failures = (
        [f"mask IoU {per_case[worst_name]:.3f} < {min_iou} for '{worst_name}'"]
        if min_iou is not None and per_case[worst_name] < min_iou
        else []
    )
    what = (
        f"IoU of thresholded {', '.join(t.name for t in thresholded)} (worst mask), {upstream_part.name} + "
        f"{part.name} exports end to end vs PyTorch on the '{name}' pixels"
    )
    return ChainReport(what, min_iou, per_case, failures)


def render(reports: Dict[str, PartReport]) -> str:
    """A text table per exported file: every output of every case against PyTorch."""
    lines = []
    for path, report in reports.items():
        lines.append(f"{Path(path).name}: {'PASS' if report.passed else 'FAIL'}  ({report.runner})")
        for output, floor in report.floors.items():
            lines.append(f"  floor for {output}: {floor_text(floor)}")
        lines.append(
            f"  {'output':<45}{'PSNR dB':>9}{'max err/max|ref|':>18}{'cosine':>10}{'NaN/Inf':>9}"
            f"{'fp32-eval PSNR':>16}"
        )
        for name, outputs in report.cases.items():
            for output in report.floors:
                if output not in outputs:
                    continue
                r = outputs[output]
                fp32 = f"{r['fp32_evaluation']['psnr_db']:.1f}" if "fp32_evaluation" in r else "-"
                label = f"{output} '{name}'"
                lines.append(
                    f"  {label[:45]:<45}{r['psnr_db']:>9.1f}{r['rel']:>18.2e}{r['cosine']:>10.6f}"
                    f"{r['non_finite']:>9}{fp32:>16}"
                )
        if report.evaluation:
            peak = report.evaluation.get("fp16_peak") or {}
            peak_text = (
                f"; largest fp16 value {peak['max_abs']:.4g} ({100 * peak['fraction_of_fp16_max']:.2f}% of "
                f"65504) at {peak['type']} op '{peak['op']}'"
                if peak
                else ""
            )
            lines.append(f"  evaluated in {report.evaluation['seconds']:.1f} s{peak_text}")
        if report.chain:
            ious = ", ".join(f"'{name}' {iou:.3f}" for name, iou in report.chain.per_case.items())
            lines.append(f"  mask IoU end to end: {ious}")
        simulated = report.float16_device
        if simulated:
            if simulated.cases:
                psnr = ", ".join(
                    f"{output} {result['psnr_db']:.1f} dB" for output, result in simulated.worst().items()
                )
                lines.append(f"  on a simulated float16 device, worst case: {psnr}")
            else:
                lines.append(f"  {simulated.runner}")
        for failure in report.all_failures:
            lines.append(f"  failed: {failure}")
        lines.append("")
    return "\n".join(lines)


@dataclass
class SequenceReport:
    """A clip through an export's parts against PyTorch's, frame by frame: each part fed PyTorch's own feeds
    (teacher-forced, what the part alone computes) and the chain running free on its own state."""

    steps: int
    results: List[Dict[str, Dict[str, Dict]]]  # per step: part -> output -> {"teacher_forced", "free"}
    failures: List[str]

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_json(self) -> Dict:
        return {
            "steps": self.steps,
            "passed": self.passed,
            "failures": self.failures,
            "results": self.results,
        }


def check_sequence(
    session, reference, steps: List[Dict[str, np.ndarray]], floors: Dict[str, Dict]
) -> SequenceReport:
    """Run the step loop (`sequence.SequencePipeline`) over `steps` on `session` (an export) and on
    `reference` (PyTorch): per step and part, every output held to `floors[part][output]` both teacher-forced
    and free-running."""
    from ..sequence import SequencePipeline

    ours, theirs = SequencePipeline(session), SequencePipeline(reference)
    results, failures = [], []
    for index, feeds in enumerate(steps):
        expected = theirs.step(feeds)
        free = ours.step(feeds)
        record: Dict[str, Dict[str, Dict]] = {}
        for part in ours.parts:
            forced = session.run(part, theirs.fed[part][-1])
            record[part] = {}
            for output, value in expected[part].items():
                result = {
                    "teacher_forced": compare(forced[output], value),
                    "free": compare(free[part][output], value),
                }
                record[part][output] = result
                for how, compared in result.items():
                    misses = shortfalls(compared, floors[part][output])
                    if misses:
                        failures.append(
                            f"step {index} {part} {output} ({how.replace('_', '-')}): {', '.join(misses)}"
                        )
        results.append(record)
    return SequenceReport(len(steps), results, failures)
