"""Core AI exports of every family, checked by Apple's runtime here: conversion time, asset sizes, the
validation figures per part, and the runtime's latency on this machine — Apple's reference CPU path
(coreai-core's Linux build), not a device number.

    .venv/bin/python benchmarks/coreai_exports.py [--models repvit,tinyvit,...] [--runs 3] [--add]

Writes coreai.json and coreai.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from samexport.export.convert import convert
from samexport.export.options import ConvertOptions
from samexport.export.target import targets
from samexport.families.registry import get_spec
from samexport.fsutil import atomic_write_text
from samexport.provenance import machine, versions

DEFAULT_MODELS = "repvit,tinyvit,efficientsam_ti,efficientsam_s,sam_vit_b,rapsam_r50"


def latency(path: Path, feeds, runs: int) -> float:
    """Median seconds of `runs` calls on the runtime (after one call that is not counted)."""
    runner = targets()["coreai"].runner(path)
    runner.run(feeds)
    seconds = [runner.run(feeds)[1]["runtime_seconds"] for _ in range(runs)]
    runner.close()
    return statistics.median(seconds)


def measure(name: str, folder: Path, runs: int) -> dict:
    from samexport import build_model

    start = time.perf_counter()
    manifest = convert(ConvertOptions(encoder=name, target="coreai", output_dir=folder), quiet=True)
    seconds = time.perf_counter() - start
    report = manifest["validation"]["coreai"]
    spec = get_spec(name)
    model = build_model(name)
    family = spec.family
    options = ConvertOptions(encoder=name, target="coreai")
    shapes = family.export_shapes(options)
    parts = family.export_parts(
        model, model, shapes, targets()["coreai"].form(options), family.reference(model, shapes)
    )
    row = {"model": name, "title": spec.title, "convert_and_check_s": round(seconds, 1), "parts": {}}
    for part, entry in manifest["files"]["coreai"].items():
        first_case = parts[part].cases(None)[0]
        row["parts"][part] = {
            "mb": round(entry["bytes"] / 1e6, 1),
            "functions": len(manifest["coreai"]["functions"][part]),
            "worst": {o: {k: w[k] for k in ("rel", "psnr_db")} for o, w in report[part]["worst"].items()},
            "cases": len(report[part]["cases"]),
            "reference_cpu_latency_s": round(latency(folder / entry["path"], first_case[1], runs), 3),
            "latency_case": first_case[0],
        }
    row["passed"] = report["passed"]
    row["timings_s"] = manifest["timings_s"]
    return row


def markdown(result: dict) -> str:
    lines = [
        "# Core AI exports checked by Apple's runtime (reference CPU path)",
        "",
        f"Machine: {result['machine'].get('cpu')}, {result['machine'].get('cores')} cores; versions: "
        + ", ".join(
            f"{k} {v}"
            for k, v in result["versions"].items()
            if k in ("samexport", "torch", "coreai-core", "coreai-torch", "numpy")
        ),
        "",
        "Latency is coreai-core's Linux runtime (its reference CPU path), median of the runs after one",
        "untimed call, on the part's first validation case: what this machine measures, not a device.",
        "",
        "| model | part | MB | functions | cases | worst max err / max abs ref | latency s (reference CPU) "
        "| runs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        for part, p in row["parts"].items():
            worst = max(w["rel"] for w in p["worst"].values())
            lines.append(
                f"| {row['title']} | {part} | {p['mb']} | {p['functions']} | {p['cases']} | {worst:.2e} | "
                f"{p['reference_cpu_latency_s']} | {row.get('runs', '')} |"
            )
    lines += [
        "",
        "Convert + check wall time (s): "
        + ", ".join(f"{r['title']} {r['convert_and_check_s']}" for r in result["rows"]),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--runs", type=int, default=3, help="timed runtime calls per part")
    parser.add_argument("--add", action="store_true", help="keep the other models' rows of an earlier run")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "linux-x86_64-2core")
    args = parser.parse_args()
    path = args.out / "coreai.json"
    rows = json.loads(path.read_text())["rows"] if args.add and path.exists() else []
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            rows = [r for r in rows if r["model"] != name] + [
                {**measure(name, Path(tmp), args.runs), "runs": args.runs}
            ]
            print(json.dumps(rows[-1]), flush=True)
        result = {"machine": machine(), "versions": versions(), "rows": rows}
        atomic_write_text(path, json.dumps(result, indent=2) + "\n")
        atomic_write_text(args.out / "coreai.md", markdown(result))


if __name__ == "__main__":
    main()
