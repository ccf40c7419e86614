"""Size and quality of every Core ML `--compress` mode, per family, judged on Linux by the NumPy
evaluator: `samexport convert --no-validate` then `samexport validate` (the verdict users get), each in
its own process. Fixture (deterministic Gaussian) weights: real checkpoints may compress differently.

    .venv/bin/python benchmarks/compression.py [--encoders repvit,tinyvit,efficientsam_ti]
        [--modes none,palettize6g,palettize4g,w8a8,a8w4]
        [--variant "repvit:palettize4g:--keep-layers first-last"] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from samexport.provenance import machine, versions

RESULTS = Path(__file__).parent / "results" / "linux-x86_64-2core"


def run(args: list) -> tuple:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "samexport.cli", *args], capture_output=True, text=True)
    return proc.returncode, time.perf_counter() - start, (proc.stderr.strip().splitlines() or [""])[-1]


def measure(encoder: str, mode: str, extra: list, folder: Path) -> dict:
    row = {"encoder": encoder, "mode": mode, "extra": " ".join(extra)}
    code, seconds, last = run(
        [
            "convert",
            "--encoder",
            encoder,
            "--target",
            "coreml",
            "--compress",
            mode,
            "--output-dir",
            str(folder),
        ]
        + ["--no-validate", "--quiet", "--force", *extra]
    )
    row["convert_s"] = round(seconds, 1)
    if code:
        return {**row, "error": last}
    manifest_path = next(folder.glob("*.export.json"))
    manifest = json.loads(manifest_path.read_text())
    row["bytes"] = {
        f"{t}_{p}": f["bytes"] for t, parts in manifest["files"].items() for p, f in parts.items()
    }
    compressed = manifest.get("coreml", {}).get("compression", {})
    row["kept_layers"] = compressed.get("kept_layers")
    row["weights"] = {
        part: {k: v for k, v in stats.items() if k != "per_layer"}
        for part, stats in compressed.get("weights", {}).items()
    }
    report_path = folder / "validate.json"
    code, seconds, last = run(["validate", str(manifest_path), "--json", str(report_path)])
    row["validate_s"] = round(seconds, 1)
    row["verdict"] = "pass" if code == 0 else f"fail: {last}"
    reports = json.loads(report_path.read_text())
    for report in reports.values():
        if "imageEmbeddings" in report:
            r = report["imageEmbeddings"]
            row["encoder_psnr_db"], row["encoder_cosine"] = r["psnr_db"], r["cosine"]
            row["encoder_eval_s"] = report.get("evaluation", {}).get("seconds")
        else:
            row["decoder_worst_mask_psnr_db"] = report["worst_masks"]["psnr_db"]
            row["decoder_eval_s"] = report.get("evaluation", {}).get("seconds")
            if "masks" in report:
                row["mask_iou_worst"] = report["masks"]["worst"]
                row["mask_iou"] = report["masks"]["per_prompt"]
    return row


def render(document: dict) -> str:
    """The table benchmarks/results/.../compression.md shows."""
    m, v = document["machine"], document["versions"]
    lines = [
        "# Core ML compression modes: size and quality (NumPy evaluator, Linux)",
        "",
        f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores; "
        + ", ".join(f"{k} {v[k]}" for k in ("python", "torch", "coremltools", "numpy") if k in v)
        + ". Made by `.venv/bin/python benchmarks/compression.py` (each export: `samexport convert "
        "--no-validate`, then `samexport validate` in its own process).",
        "",
        "**Weights: the deterministic fixture fill** (Gaussian, std 1/sqrt(fan-in), no outliers: excess "
        "kurtosis ~0 per layer, see the weight columns), not trained weights. Random networks have no "
        "redundancy to lose, so these numbers are a pessimistic bound; trained checkpoints may differ "
        "either way and must be validated with `samexport validate` on their own packages.",
        "",
        "Encoder: embeddings vs PyTorch. Decoder: worst mask-logit PSNR over the validation prompts "
        "(PyTorch embeddings in). Mask IoU: encoder + decoder packages end to end vs PyTorch, low-res "
        "masks thresholded at 0, worst mask token of the worst prompt. Floors: cosine >= 0.98 and PSNR "
        ">= 20 dB; grouped / int8-activation modes also mask IoU >= 0.9.",
        "",
        "Times are wall seconds on 2 cores; the 2026-11-28 rows ran partly beside the test suite, so they "
        "are upper bounds. RepViT `palettize6g`, EfficientSAM-Ti `palettize6g`/`a8w4` and the "
        "`--keep-layers` / `--weight-clip` variants are not measured yet (the script resumes and appends).",
        "",
        "| model | mode | options | encoder MB | decoder MB | enc PSNR dB | enc cosine | dec worst PSNR dB "
        "| mask IoU worst | verdict | convert s | validate s (enc eval, dec eval) "
        "| weight kurtosis (median) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in document["rows"]:
        if "error" in r:
            lines.append(f"| {r['encoder']} | {r['mode']} | {r['extra']} | error: {r['error']} |")
            continue
        b = r["bytes"]
        iou = f"{r['mask_iou_worst']:.3f}" if "mask_iou_worst" in r else "-"
        kurtosis = r.get("weights", {}).get("encoder", {}).get("median_excess_kurtosis")
        lines.append(
            f"| {r['encoder']} | {r['mode']} | {r['extra'] or '-'} | {b['coreml_encoder'] / 1e6:.1f} "
            f"| {b['coreml_decoder'] / 1e6:.1f} | {r['encoder_psnr_db']:.1f} | {r['encoder_cosine']:.4f} "
            f"| {r['decoder_worst_mask_psnr_db']:.1f} | {iou} | {r['verdict'].split(':')[0]} "
            f"| {r['convert_s']} | {r['validate_s']} ({r.get('encoder_eval_s')}, {r.get('decoder_eval_s')}) "
            f"| {'-' if kurtosis is None else f'{kurtosis:.2f}'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--encoders", default="repvit,tinyvit,efficientsam_ti")
    parser.add_argument("--modes", default="none,palettize6g,palettize4g,w8a8,a8w4")
    parser.add_argument("--variant", action="append", default=[], help="encoder:mode:extra convert options")
    parser.add_argument("--out", type=Path, default=RESULTS / "compression.json")
    parser.add_argument("--render-only", action="store_true", help="rewrite the .md from the .json")
    args = parser.parse_args()
    jobs = [(e, m, []) for e in args.encoders.split(",") for m in args.modes.split(",")]
    for variant in args.variant:
        encoder, mode, extra = variant.split(":", 2)
        jobs.append((encoder, mode, shlex.split(extra)))
    rows = json.loads(args.out.read_text())["rows"] if args.out.exists() else []
    if not jobs or args.render_only:
        args.out.with_suffix(".md").write_text(render(json.loads(args.out.read_text())))
        return
    done = {(r["encoder"], r["mode"], r["extra"]) for r in rows}
    for encoder, mode, extra in jobs:
        if (encoder, mode, " ".join(extra)) in done:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            row = measure(encoder, mode, extra, Path(tmp))
        print(json.dumps({k: v for k, v in row.items() if k not in ("weights", "mask_iou")}), flush=True)
        rows.append(row)
        document = {"machine": machine(), "versions": versions(), "weights": "fixture fill", "rows": rows}
        args.out.write_text(json.dumps(document, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(render(document))


if __name__ == "__main__":
    main()
