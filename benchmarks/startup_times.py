"""Wall time of `samexport --help` and `samexport list`, each in a fresh process, and which heavy
modules `--help` imports.

    .venv/bin/python benchmarks/startup_times.py [--runs 5] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from samexport.provenance import machine, versions

COMMANDS = {"--help": ["--help"], "list": ["list"]}
HEAVY = ("torch", "onnx", "onnxruntime", "coremltools", "numpy")


def time_command(args, runs: int):
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "samexport.cli", *args], check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return {
        "median_s": round(statistics.median(samples), 3),
        "min_s": round(min(samples), 3),
        "samples_s": [round(s, 3) for s in samples],
    }


def heavy_imports_of_help():
    code = (
        "import sys\nfrom samexport.cli import run\nrun(['--help'])\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1].replace("'", '"'))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = {
        "machine": machine(),
        "versions": versions(),
        "runs": args.runs,
        "commands": {name: time_command(argv, args.runs) for name, argv in COMMANDS.items()},
        "help_imports": heavy_imports_of_help(),
    }
    for name, row in result["commands"].items():
        print(f"samexport {name}: median {row['median_s']} s, min {row['min_s']} s")
    print(f"heavy modules imported by --help: {result['help_imports'] or 'none'}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
