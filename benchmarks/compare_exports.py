"""Compare two export folders of one model (e.g. written by two versions of samexport), every target and
part: the validation numbers their manifests record (reports of any manifest format, normalised to
(target, part, case, output)), and the files' outputs on the same inputs (ONNX with onnxruntime, Core ML
packages by the NumPy evaluation of their saved programs).

    .venv/bin/python benchmarks/compare_exports.py OLD_DIR NEW_DIR MobileSAM [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

from samexport.export.outputs import manifest_files, upgrade_manifest
from samexport.mileval import evaluate, load_program

NUMBERS = ("max_abs", "rel", "psnr_db", "cosine", "non_finite")


def comparisons(report: Dict, prefix: Tuple = ()):
    """Every comparison (a dict with `rel` and `psnr_db`) in a validation report, keyed by the case and
    output it is of, whatever the report's layout (the worst-of summaries and end-to-end IoU left out)."""
    for key, value in report.items():
        if not isinstance(value, dict) or key in (
            "worst",
            "worst_masks",
            "worst_iou",
            "token_counts",
            "floors",
        ):
            continue
        if "rel" in value and "psnr_db" in value:
            yield prefix + (key,), {k: value[k] for k in NUMBERS}
        else:
            yield from comparisons(value, prefix + (key,))


def normalised(validation: Dict) -> Dict[Tuple[str, str, str, str], Dict]:
    """(target, part, case, output) -> numbers. Reports of samexport.export/1 held the encoder's
    comparison at the part's top level (`encoder.imageEmbeddings`, or the ONNX `encoder` itself)."""
    found = {}
    for target, report in validation.items():
        if not isinstance(report, dict):
            continue
        for path, values in comparisons(report):
            part, rest = path[0], [p for p in path[1:] if p != "cases"]
            if not rest:  # samexport.export/1 ONNX encoder: the comparison itself
                rest = ["validation image", "imageEmbeddings"]
            elif len(rest) == 1:  # samexport.export/1 Core ML encoder: {imageEmbeddings: ...}
                rest = ["validation image", rest[0]]
            if rest[-1] == "fp32_evaluation":
                rest = [rest[0], rest[1] + " (fp32 evaluation)"]
            found[(target, part, rest[0], rest[-1])] = values
    return found


def synthetic(names_shapes, rng) -> Dict[str, np.ndarray]:
    feeds = {}
    for name, shape in names_shapes:
        if "Labels" in name:
            feeds[name] = np.ones(shape, np.float32)
        elif name in ("resizedSize",):
            feeds[name] = np.array([200.0, 300.0], np.float32)
        elif name == "image" and len(shape) == 4:
            feeds[name] = rng.uniform(0, 1, shape).astype(np.float32)
        else:
            feeds[name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def onnx_outputs(path: Path, rng_seed: int, tokens: int = 3):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shapes = [(i.name, [d if isinstance(d, int) else tokens for d in i.shape]) for i in session.get_inputs()]
    feeds = synthetic(shapes, np.random.default_rng(rng_seed))
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


def coreml_outputs(path: Path, rng_seed: int):
    program = load_program(path)
    shapes = [(n, inp.enumerated[0] if inp.enumerated else inp.shape) for n, inp in program.inputs.items()]
    feeds = synthetic(shapes, np.random.default_rng(rng_seed))
    if "image" in feeds and program.inputs["image"].shape[1] == 3 and "points" not in feeds:
        feeds["image"] = feeds["image"] * 255  # an image input takes 0..255 pixels
    return evaluate(program, feeds).outputs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("manifest_stem")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--skip-coreml-encoder", action="store_true", help="its NumPy evaluation takes minutes"
    )
    args = parser.parse_args()
    raw = [
        json.loads((folder / f"{args.manifest_stem}.export.json").read_text())
        for folder in (args.old, args.new)
    ]
    manifests = [upgrade_manifest(m) for m in raw]
    old, new = (normalised(m["validation"]) for m in manifests)
    common = sorted(set(old) & set(new))
    differing = [key for key in common if old[key] != new[key]]
    result: Dict = {
        "formats": [m.get("format") for m in raw],
        "validation": {
            "compared": len(common),
            "identical": len(common) - len(differing),
            "differing": [{"key": list(k), "old": old[k], "new": new[k]} for k in differing],
            "only_old": [list(k) for k in sorted(set(old) - set(new))],
            "only_new": [list(k) for k in sorted(set(new) - set(old))],
        },
        "files": {},
    }
    files = [manifest_files(m) for m in manifests]
    for target in sorted(set(files[0]) & set(files[1])):
        for part in sorted(set(files[0][target]) & set(files[1][target])):
            paths = [folder / files[i][target][part]["path"] for i, folder in enumerate((args.old, args.new))]
            entry = {"bytes": [files[0][target][part]["bytes"], files[1][target][part]["bytes"]]}
            if target == "onnx":
                outputs = [onnx_outputs(p, 1) for p in paths]
            elif target == "coreml" and not (args.skip_coreml_encoder and part == "encoder"):
                outputs = [coreml_outputs(p, 1) for p in paths]
            else:
                outputs = None
            if outputs is not None:
                entry["max_abs_difference"] = {
                    name: float(np.abs(np.asarray(outputs[0][name]) - np.asarray(outputs[1][name])).max())
                    for name in outputs[0]
                }
            result["files"][f"{target} {part}"] = entry
            print(f"{target} {part}: {entry}", flush=True)
    v = result["validation"]
    print(
        f"validation numbers: {v['identical']} of {v['compared']} comparisons identical; "
        f"only in old {len(v['only_old'])}, only in new {len(v['only_new'])}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
