"""Wall time, peak memory, sizes and parity of `samexport convert` for each family and target.

Each conversion runs in its own process (as a user would run it), with random weights.

    .venv/bin/python benchmarks/convert_times.py [--encoders repvit,tinyvit,...] [--target all]
        [--extra "--compress int8"] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from samexport.provenance import machine, versions

FAMILIES = ["repvit", "tinyvit", "efficientsam_ti", "efficientsam_s", "sam_vit_b"]


def convert_once(encoder: str, target: str, extra: list, out_dir: Path) -> dict:
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "samexport.cli",
                "convert",
                "--encoder",
                encoder,
                "--target",
                target,
                "--output-dir",
                str(out_dir),
                "--force",
                "--quiet",
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )
        # This child's own rusage (RUSAGE_CHILDREN would be the largest child so far). Its ru_maxrss
        # starts from this small driver's RSS at fork, which is negligible here.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        return {
            "encoder": encoder,
            "target": target,
            "extra": extra,
            "status": "error",
            "error": stderr.strip().splitlines()[-1] if stderr.strip() else "",
            "wall_s": round(wall, 1),
        }
    manifest = json.loads(next(out_dir.glob("*.export.json")).read_text())
    for f in out_dir.glob("*.export.json"):
        f.unlink()
    onnx = manifest["validation"].get("onnx", {})
    return {
        "encoder": encoder,
        "target": target,
        "extra": extra,
        "status": "ok",
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "files_mb": {
            f"{t}_{p}": round(v["bytes"] / 1e6, 1)
            for t, parts in manifest["files"].items()
            for p, v in parts.items()
        },
        "steps_s": manifest["timings_s"],
        "onnx_encoder_rel_err": onnx.get("encoder", {})
        .get("worst", {})
        .get("imageEmbeddings", {})
        .get("rel"),
        "onnx_decoder_masks_rel_err": onnx.get("decoder", {})
        .get("worst", {})
        .get("lowResMasks", {})
        .get("rel"),
        "onnx_decoder_iou_rel_err": onnx.get("decoder", {}).get("worst", {}).get("iouScores", {}).get("rel"),
        "fusion": manifest["reparameterization"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", default=",".join(FAMILIES))
    parser.add_argument("--target", default="all")
    parser.add_argument("--extra", default="", help='more convert options, e.g. "--compress int8"')
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = []
    for encoder in args.encoders.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            row = convert_once(encoder, args.target, shlex.split(args.extra), Path(tmp))
        rows.append(row)
        print(
            json.dumps(
                {k: row[k] for k in ("encoder", "status", "wall_s")} | {"files_mb": row.get("files_mb")}
            ),
            file=sys.stderr,
        )
    result = {
        "machine": machine(),
        "versions": versions(),
        "target": args.target,
        "extra": args.extra,
        "rows": rows,
        "total_wall_s": round(sum(r["wall_s"] for r in rows), 1),
    }
    print("| encoder | status | wall s | files (MB) |\n|---|---|---|---|")
    for r in rows:
        files = ", ".join(f"{k} {v}" for k, v in (r.get("files_mb") or {}).items()) or r.get("error", "")
        print(f"| {r['encoder']} | {r['status']} | {r['wall_s']} | {files} |")
    print(f"| total | | {result['total_wall_s']} | |")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
