"""Compare two export folders of one model (e.g. written by two versions of samexport): the validation
numbers their manifests record, ONNX outputs on the same random inputs, and the NumPy evaluation of
their Core ML decoders.

    .venv/bin/python benchmarks/compare_exports.py OLD_DIR NEW_DIR MobileSAM
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

from samexport.mileval import evaluate, load_program

IGNORED = ("seconds", "method", "evaluation", "floor", "tolerance")


def numbers(value):
    """A validation report without timings and wording: the numbers that must not change."""
    if isinstance(value, dict):
        return {k: numbers(v) for k, v in value.items() if k not in IGNORED}
    return value


def main() -> None:
    old, new, base = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    manifests = [json.loads((folder / f"{base}.export.json").read_text()) for folder in (old, new)]
    for target in ("onnx", "coreml"):
        same = numbers(manifests[0]["validation"][target]) == numbers(manifests[1]["validation"][target])
        print(f"{target} validation numbers identical: {same}")
    print(
        "bytes (old, new):",
        {
            k: (manifests[0]["files"][k]["bytes"], manifests[1]["files"][k]["bytes"])
            for k in manifests[0]["files"]
        },
    )
    rng = np.random.default_rng(1)
    for part in ("Encoder", "Decoder"):
        sessions = [ort.InferenceSession(str(folder / f"{base}{part}.onnx")) for folder in (old, new)]
        feeds = {}
        for spec in sessions[0].get_inputs():
            shape = [d if isinstance(d, int) else 3 for d in spec.shape]
            feeds[spec.name] = (
                np.ones(shape, np.float32)
                if "Labels" in spec.name
                else rng.standard_normal(shape).astype(np.float32)
            )
        outputs = [s.run(None, feeds) for s in sessions]
        diff = max(float(np.abs(a - b).max()) for a, b in zip(*outputs))
        print(f"ONNX {part}: max |old - new| = {diff}")
    programs = [load_program(folder / f"{base}Decoder.mlpackage") for folder in (old, new)]
    feeds = {
        name: rng.standard_normal(inp.enumerated[0] if inp.enumerated else inp.shape).astype(np.float32)
        for name, inp in programs[0].inputs.items()
    }
    results = [evaluate(p, feeds).outputs for p in programs]
    diff = max(float(np.abs(results[0][k] - results[1][k]).max()) for k in results[0])
    print(f"Core ML Decoder (NumPy evaluation): max |old - new| = {diff}")


if __name__ == "__main__":
    main()
