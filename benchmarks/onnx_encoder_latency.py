"""ONNX Runtime CPU latency of the RepViT-SAM encoder: an official-style export vs samexport's.

Official style: the unfused model, torch.jit.trace, torch.onnx.export, no simplification, a
default onnxruntime session. Each samexport step is added one at a time so the table shows what
each one buys. Same weights, same input, one process; variants are timed in interleaved rounds
so drift on the machine hits all of them alike.

    .venv/bin/python benchmarks/onnx_encoder_latency.py [--encoder repvit] [--rounds 5] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import samexport
from samexport.export import onnx_export
from samexport.export.samples import validation_image
from samexport.export.wrappers import EncoderForExport


def official_style_export(model, path: Path) -> None:
    traced = torch.jit.trace(model.image_encoder.eval(), torch.zeros(1, 3, 1024, 1024))
    with torch.no_grad():
        torch.onnx.export(traced, (torch.zeros(1, 3, 1024, 1024),), str(path), input_names=["image"],
                          output_names=["imageEmbeddings"], opset_version=17, dynamo=False)


def make_session(path: Path, tuned: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if tuned:
        options.intra_op_num_threads = os.cpu_count() or 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="repvit")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = samexport.build_model(args.encoder)
        fused = samexport.reparameterize_model(model)
    x = model.preprocess(validation_image()).numpy()
    work = Path(tempfile.mkdtemp(prefix="onnx-bench-"))
    official, fused_raw, fused_sim = work / "official.onnx", work / "fused.onnx", work / "fused_sim.onnx"
    official_style_export(model, official)
    onnx_export.export(EncoderForExport(fused.image_encoder), (torch.zeros(1, 3, 1024, 1024),), fused_raw,
                       ["image"], ["imageEmbeddings"])
    onnx_export.copy_model(fused_raw, fused_sim)
    onnx_export.simplify(fused_sim)

    variants = {
        "official-style (unfused trace, default session)": make_session(official, tuned=False),
        "+ reparameterized (fused)": make_session(fused_raw, tuned=False),
        "+ onnxsim": make_session(fused_sim, tuned=False),
        "+ session: all cores, sequential, ORT_ENABLE_ALL (samexport bench)": make_session(fused_sim, tuned=True),
    }
    reference = None
    for name, sess in variants.items():
        out = sess.run(None, {"image": x})[0]  # warm-up and parity
        reference = out if reference is None else reference
        err = float(np.abs(out - reference).max() / np.abs(reference).max())
        print(f"{name}: max error vs official-style {err:.1e}", file=sys.stderr)
    samples = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, sess in variants.items():
            start = time.perf_counter()
            sess.run(None, {"image": x})
            samples[name].append(time.perf_counter() - start)
    base = statistics.median(samples[next(iter(variants))])
    rows = []
    for name, values in samples.items():
        median = statistics.median(values)
        rows.append({"variant": name, "median_s": round(median, 4), "min_s": round(min(values), 4),
                     "ratio_vs_official": round(median / base, 3), "samples_s": [round(v, 4) for v in values]})
    result = {
        "encoder": args.encoder,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count()},
        "versions": {p: metadata.version(p) for p in ("samexport", "torch", "onnx", "onnxruntime", "onnxsim")},
        "rounds": args.rounds,
        "rows": rows,
    }
    print(f"| variant | median s | min s | vs official |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['median_s']:.3f} | {r['min_s']:.3f} | {r['ratio_vs_official']:.2f}x |")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
