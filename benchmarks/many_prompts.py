"""Many prompts per image on this CPU: the batched ONNX decoder's curve, everything mode's time split,
and the Core ML decoder package size per batch set.

1. onnxruntime (CPU provider, all cores): one decoder call with B = 1, 4, 16, 64 prompt sets of one
   click each (2 tokens, or 6 for EfficientSAM), median of `--runs` calls after one warm-up call.
2. Everything mode (`MaskGenerator`, ONNX backend) on the validation photo, 32 x 32 grid, no crop
   layers, points_per_batch 64: once with the official default thresholds (0.88 / 0.95) and once with
   both filters off (every one of the 3072 candidates reaches box NMS and RLE: the most
   post-processing the grid can cause). With the fixture weights the default thresholds pass few
   candidates, so the second run is the honest bound on post-processing.
3. Core ML decoder packages converted with --batch 1 and --batch 1,4,16,64 (fp16, validated).

    .venv/bin/python benchmarks/many_prompts.py [--encoder tinyvit] [--runs 5] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from samexport.export.convert import convert
from samexport.export.options import ConvertOptions, artifact_names
from samexport.export.runtimes import ExportPredictor
from samexport.families.registry import get_spec
from samexport.fsutil import atomic_write_text, tree_bytes
from samexport.mask_generator import MaskGenerator
from samexport.provenance import machine, versions
from samexport.samples import validation_image

BATCHES = (1, 4, 16, 64)


def decoder_curve(predictor: ExportPredictor, spec, runs: int) -> list:
    shapes_only = spec.build_meta()  # prompt_tokens needs no weights
    predictor.set_image(validation_image())
    rows = []
    for batch in BATCHES:
        points = torch.rand(batch, 2, generator=torch.Generator().manual_seed(batch)) * 1024
        prompts = [shapes_only.prompt_tokens((1024, 1024), points=[p.tolist()], labels=[1]) for p in points]
        coords = torch.cat([c for c, _ in prompts])
        labels = torch.cat([lab for _, lab in prompts])
        predictor.decode(predictor.embeddings, coords, labels)
        seconds = []
        for _ in range(runs):
            start = time.perf_counter()
            predictor.decode(predictor.embeddings, coords, labels)
            seconds.append(time.perf_counter() - start)
        median = statistics.median(seconds) * 1000
        rows.append(
            {"batch": batch, "ms_per_call": round(median, 1), "ms_per_prompt": round(median / batch, 2)}
        )
    single = rows[0]["ms_per_call"]
    for row in rows:
        row["per_prompt_vs_single_call"] = round(row["ms_per_prompt"] / single, 3)
    return rows


def everything_split(predictor: ExportPredictor, thresholds) -> dict:
    generator = MaskGenerator(
        predictor, points_per_side=32, pred_iou_thresh=thresholds[0], stability_score_thresh=thresholds[1]
    )
    records = generator.generate(validation_image())
    timings = {k: round(v, 2) for k, v in generator.timings.items()}
    total = generator.timings["total"]
    return {
        "pred_iou_thresh": thresholds[0],
        "stability_score_thresh": thresholds[1],
        "masks": len(records),
        "stage_counts": {k: v for k, v in generator.stage_counts.items() if k != "per_crop"},
        "seconds": timings,
        "share_percent": {k: round(100 * generator.timings[k] / total, 1) for k in timings if k != "total"},
    }


def coreml_sizes(encoder: str, folder: Path) -> list:
    rows = []
    for batch in ((1,), BATCHES):
        out = folder / f"coreml-batch-{'-'.join(map(str, batch))}"
        options = ConvertOptions(encoder=encoder, target="coreml", output_dir=out, batch=batch)
        start = time.perf_counter()
        manifest = convert(options, quiet=True)
        decoder = out / manifest["files"]["coreml"]["decoder"]["path"]
        check = manifest["validation"]["coreml"]["decoder"]
        rows.append(
            {
                "batch": list(batch),
                "decoder_package_bytes": tree_bytes(decoder),
                "enumerated_shapes": len(batch) * len(manifest["decoder_prompt"]["token_counts"]),
                "validated": check["passed"],
                "worst_masks_psnr_db": check["worst"]["lowResMasks"].get("psnr_db"),
                "convert_seconds": round(time.perf_counter() - start, 1),
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="tinyvit")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/linux-x86_64-2core"))
    parser.add_argument("--skip-coreml", action="store_true")
    args = parser.parse_args()
    spec = get_spec(args.encoder)
    result = {"machine": machine(), "versions": versions(), "encoder": spec.name, "weights": "fixture fill"}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        options = ConvertOptions(encoder=spec.name, target="onnx", output_dir=folder)
        convert(options, quiet=True)
        predictor = ExportPredictor(folder / artifact_names(spec, options)[("manifest", "")], "onnx")
        result["onnx_decoder_curve"] = decoder_curve(predictor, spec, args.runs)
        if not spec.family.everything_refusal:
            result["everything_onnx"] = [
                everything_split(predictor, (0.88, 0.95)),
                everything_split(predictor, (0.0, 0.0)),
            ]
        if not args.skip_coreml:
            result["coreml_decoder_sizes"] = coreml_sizes(spec.name, folder)
    path = args.out / f"many_prompts_{spec.name}.json"
    atomic_write_text(path, json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
