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
    row["bytes"] = {k: f["bytes"] for k, f in manifest["files"].items()}
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--encoders", default="repvit,tinyvit,efficientsam_ti")
    parser.add_argument("--modes", default="none,palettize6g,palettize4g,w8a8,a8w4")
    parser.add_argument("--variant", action="append", default=[], help="encoder:mode:extra convert options")
    parser.add_argument("--out", type=Path, default=RESULTS / "compression.json")
    args = parser.parse_args()
    jobs = [(e, m, []) for e in args.encoders.split(",") for m in args.modes.split(",")]
    for variant in args.variant:
        encoder, mode, extra = variant.split(":", 2)
        jobs.append((encoder, mode, shlex.split(extra)))
    rows = json.loads(args.out.read_text())["rows"] if args.out.exists() else []
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


if __name__ == "__main__":
    main()
