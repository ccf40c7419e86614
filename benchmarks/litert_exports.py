"""LiteRT exports of every family beside their ONNX exports, in one run: conversion time, file sizes, the
interpreter's validation figures, each file's structure, and the latency of every encoder and decoder on
LiteRT's XNNPACK CPU delegate and on onnxruntime's CPU provider, measured alternately in child processes
(`samexport bench`'s worker) so that both see the same machine load; the ratio is XNNPACK / onnxruntime.

    .venv/bin/python benchmarks/litert_exports.py [--models repvit,tinyvit,...] [--rounds 3] [--add]

Latency: onnxruntime and XNNPACK compute float32 (the ONNX and LiteRT fp32 files), and XNNPACK the int8 files
(dynamic-range int8, `--compress int8`) beside them. The fp16 files (float16 weights) are
validated in XNNPACK's float16 inference; its latency on this x86 CPU (float16 emulated through F16C) says
nothing of a phone's and is not measured. Decoders: one click (one prompt set).
Writes litert.json and litert.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from samexport.bench.backends import backends_for
from samexport.bench.child import run_part
from samexport.errors import UsageError
from samexport.export.convert import convert
from samexport.export.options import ConvertOptions
from samexport.families.registry import get_spec
from samexport.fsutil import atomic_write_text
from samexport.provenance import machine, versions

DEFAULT_MODELS = "repvit,tinyvit,efficientsam_ti,efficientsam_s,sam_vit_b,rapsam_r50"
VARIANTS = (
    ("onnx", "fp32", "none"),
    ("litert", "fp32", "none"),
    ("litert", "fp16", "none"),
    ("litert", "fp32", "int8"),
)
RESULTS = Path(__file__).parent / "results" / "linux-x86_64-2core"


def measure(name: str, folder: Path, rounds: int) -> dict:
    spec = get_spec(name)
    family = spec.family
    points = (1, 3) if family.prompts_are_queries else (1,)
    timings = {}
    manifests = {}
    for target, precision, compress in VARIANTS:
        start = time.perf_counter()
        options = ConvertOptions(
            encoder=name,
            target=target,
            precision=precision,
            compress=compress,
            points=points,
            output_dir=folder,
        )
        key = (target, precision if compress == "none" else compress)
        try:
            manifests[key] = convert(options, quiet=True)
        except UsageError as refused:  # RAP-SAM takes no --compress
            manifests[key] = None
            timings[key] = f"refused: {refused}"
            continue
        timings[key] = round(time.perf_counter() - start, 1)
    lite, lite16, lite8 = (manifests[("litert", v)] for v in ("fp32", "fp16", "int8"))
    onnx = manifests[("onnx", "fp32")]
    backends = backends_for("cpu", False)
    row = {
        "model": name,
        "title": spec.title,
        "convert_and_check_s": {f"{t} {p}": s for (t, p), s in timings.items()},
        "parts": {},
    }
    tokens = family.click_tokens(1)
    for part in family.bench_parts:
        jobs = {}
        runs = (("onnx", "onnx", onnx), ("litert", "litert", lite), ("int8", "litert", lite8))
        for runtime, target, manifest in (r for r in runs if r[2] is not None):
            interface = manifest[target][part]["interface"]
            jobs[runtime] = {
                "path": str(folder / manifest["files"][target][part]["path"]),
                "part": part,
                "inputs": interface["inputs"],
                "points": tokens,
                "batch": 1,
                "runs": 5 if part != "decoder" else 20,
                "warmup": 1,
                **backends[target].worker_job("cpu"),
            }
        medians = {runtime: [] for runtime in jobs}
        for _ in range(rounds):  # alternate, so that every runtime sees the same load
            for runtime, job in jobs.items():
                result = run_part(job)
                if result["status"] != "ok":
                    raise SystemExit(f"{name} {part} on {runtime}: {result.get('error')}")
                medians[runtime].append(result["stats"]["median_ms"])
        section = lite["litert"][part]
        report = lite["validation"]["litert"][part]
        row["parts"][part] = {
            "mb": {
                "litert fp32": round(lite["files"]["litert"][part]["bytes"] / 1e6, 1),
                "litert fp16": round(lite16["files"]["litert"][part]["bytes"] / 1e6, 1),
                "litert int8": round(lite8["files"]["litert"][part]["bytes"] / 1e6, 1) if lite8 else None,
                "onnx": round(onnx["files"]["onnx"][part]["bytes"] / 1e6, 1),
            },
            "signatures": len(section["signatures"]),
            "worst_fp32": {o: {k: w[k] for k in ("rel", "psnr_db")} for o, w in report["worst"].items()},
            "worst_fp16": {
                o: {k: w[k] for k in ("rel", "psnr_db")}
                for o, w in lite16["validation"]["litert"][part]["worst"].items()
            },
            "worst_int8": {
                o: {k: w[k] for k in ("cosine", "psnr_db")}
                for o, w in (lite8["validation"]["litert"][part]["worst"].items() if lite8 else ())
            },
            "max_rank": section["structure"]["max_rank"],
            "ops_above_rank4": section["structure"]["ops_above_rank4"],
            "largest_activation": section["activations"].get("max_abs"),
            "largest_activation_tensor": section["activations"].get("tensor"),
            "largest_activation_op": section["activations"].get("made_by"),
            "xnnpack_ms": statistics.median(medians["litert"]),
            "xnnpack_int8_ms": statistics.median(medians["int8"]) if medians.get("int8") else None,
            "onnxruntime_ms": statistics.median(medians["onnx"]),
            "round_medians_ms": medians,
        }
        row["parts"][part]["ratio"] = round(
            row["parts"][part]["xnnpack_ms"] / row["parts"][part]["onnxruntime_ms"], 3
        )
    return row


def activation(part: dict) -> str:
    value = part.get("largest_activation")
    return "not recorded" if value is None else f"{value:.0f} ({part.get('largest_activation_op') or '?'})"


def render(document: dict) -> str:
    lines = [
        "# LiteRT exports (XNNPACK) beside onnxruntime, this machine",
        "",
        f"{document['machine']['cpu']}, {document['machine']['cores']} cores; LiteRT on "
        f"{document['litert_threads']} threads, onnxruntime with its default (one thread per physical core). "
        f"{document['rounds']} rounds alternating the three runs per part, each round the median of 5 "
        "(encoders) or 20 (decoders) timed calls in a child process; the table gives the median of the "
        "round medians. Latency in float32 (fp32 files) and of the int8 files (dynamic-range int8) on "
        "XNNPACK; the fp16 files (float16 weights) validated in XNNPACK's float16 inference (FORCE_FP16); "
        "ratio = XNNPACK fp32 / onnxruntime fp32. Decoders: one click.",
        "",
        "| model | part | XNNPACK ms | onnxruntime ms | ratio | XNNPACK int8 ms | fp32 worst rel "
        "| fp16 inference worst PSNR dB | int8 worst cosine / PSNR dB | MB fp32 / fp16 / int8 | max rank "
        "| largest activation |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in document["rows"]:
        for part, p in row["parts"].items():
            rel = max(w["rel"] for w in p["worst_fp32"].values())
            psnr = min(w["psnr_db"] for w in p["worst_fp16"].values())
            int8 = p["worst_int8"].values()
            int8_text = (
                f"{min(w['cosine'] for w in int8):.4f} / {min(w['psnr_db'] for w in int8):.1f}"
                if int8
                else "refused"
            )
            int8_ms = "-" if p["xnnpack_int8_ms"] is None else f"{p['xnnpack_int8_ms']:.1f}"
            mb = p["mb"]
            lines.append(
                f"| {row['model']} | {part} | {p['xnnpack_ms']:.1f} | {p['onnxruntime_ms']:.1f} | "
                f"{p['ratio']:.2f} | {int8_ms} | {rel:.1e} | {psnr:.1f} | "
                f"{int8_text} | "
                f"{mb['litert fp32']} / {mb['litert fp16']} / {mb['litert int8']} "
                f"| {p['max_rank']} | {activation(p)} |"
            )
    if document.get("note"):
        lines += ["", document["note"]]
    lines += [
        "",
        "Conversion and check time (s): "
        + "; ".join(
            f"{r['model']}: " + ", ".join(f"{k} {v}" for k, v in r["convert_and_check_s"].items())
            for r in document["rows"]
        ),
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in document["versions"].items()),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--add", action="store_true", help="keep the rows of models already measured")
    args = parser.parse_args()
    path = RESULTS / "litert.json"
    rows = json.loads(path.read_text())["rows"] if args.add and path.exists() else []
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory() as folder:
            rows = [r for r in rows if r["model"] != name] + [measure(name, Path(folder), args.rounds)]
        document = {
            "machine": machine(),
            "versions": versions(),
            "litert_threads": os.cpu_count(),
            "rounds": args.rounds,
            "rows": rows,
        }
        atomic_write_text(path, json.dumps(document, indent=2) + "\n")  # after every model
        atomic_write_text(RESULTS / "litert.md", render(document))
        print(render(document))


if __name__ == "__main__":
    main()
