"""Everything mode's unit of work, one decoder call of 64 single-click prompt sets, on every backend this
machine runs, in one process and one run (a ratio, not absolute speed): PyTorch, onnxruntime, and the
Core ML package evaluated by the NumPy evaluator (what `segment --backend coreml` runs off macOS).
Median of `--runs` calls after one warm-up call. segment's note on the evaluator's slowness quotes it.

    .venv/bin/python benchmarks/decode_backends.py [--encoder tinyvit] [--runs 3] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from samexport import build_model
from samexport.export.convert import convert
from samexport.export.options import EVERYTHING_BATCH, ConvertOptions, artifact_names
from samexport.export.runtimes import ExportPredictor
from samexport.families.registry import get_spec
from samexport.fsutil import atomic_write_text
from samexport.predictor import TorchPredictor
from samexport.provenance import machine, versions
from samexport.samples import validation_image

PROMPTS = 64


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="tinyvit")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/linux-x86_64-2core"))
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    spec = get_spec(args.encoder)
    with tempfile.TemporaryDirectory() as tmp:
        options = ConvertOptions(
            encoder=spec.name, target="all", output_dir=Path(tmp), batch=EVERYTHING_BATCH, validate=False
        )
        convert(options, quiet=True)
        manifest = Path(tmp) / artifact_names(spec, options)[("manifest", "")]
        predictors = {
            "torch": TorchPredictor(build_model(spec.name)),
            "onnxruntime": ExportPredictor(manifest, "onnx"),
            "numpy evaluator (Core ML package)": ExportPredictor(manifest, "coreml", method="numpy"),
        }
        image = validation_image()
        # one click per prompt set in the family's token layout, at seeded places in the model frame
        tokens, labels = spec.build_meta().prompt_tokens((1024, 1024), points=[[0, 0]], labels=[1])
        generator = torch.Generator().manual_seed(0)
        clicks = torch.rand(PROMPTS, 1, 2, generator=generator) * 1000
        coords = clicks.expand(-1, tokens.shape[1], -1).clone()
        labels = labels.expand(PROMPTS, -1).clone()
        seconds = {}
        for name, predictor in predictors.items():
            predictor.set_image(image)
            predictor.predict(coords, labels)  # warm-up
            times = []
            for _ in range(args.runs):
                start = time.perf_counter()
                predictor.predict(coords, labels)
                times.append(time.perf_counter() - start)
            seconds[name] = statistics.median(times)
            print(f"{name}: {seconds[name]:.2f} s per {PROMPTS} prompts", file=sys.stderr)
    fastest = min(seconds.values())
    result = {
        "machine": machine(),
        "versions": versions(),
        "encoder": spec.name,
        "weights": "fixture fill",
        "prompts_per_call": PROMPTS,
        "runs": args.runs,
        "seconds_per_call": seconds,
        "ratio_to_fastest": {k: round(v / fastest, 2) for k, v in seconds.items()},
    }
    atomic_write_text(args.out / f"decode_backends_{spec.name}.json", json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
