"""RAP-SAM R50 `segment --video` on every backend it runs here, against `--backend torch` in the same run:
a 4-frame 640x480 clip of the parity scene moving, exports at the clip's official video size (736x992),
fixture weights and classifiers. Per backend: the conversion (time, its check's verdict), the run (time),
and the instances against torch's (ids and classes, worst score and class-score difference, worst mask IoU).

    .venv/bin/python benchmarks/rapsam_video_backends.py [--out FILE.json]
        [--backends onnx,litert,coreai]

LiteRT at 736x992: its float16 default refuses the prompt decoder (float16 IoU scores off by 0.07 on the
fill), and its float32 tube head misses the pooled-output floor on the 4-frame validation case (1.18e-3 of
max |ref| > 1e-3: LiteRT files do not expose the hard masks the check recomputes PyTorch under), so it is
converted with --precision fp32 --no-validate here and its instances are what this script measures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from samexport.provenance import machine, versions

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "linux-x86_64-2core"
PARITY = ROOT.parent / "shared" / "parity"
CONVERT = {
    "onnx": (),
    "coreai": (),
    "litert": ("--precision", "fp32", "--no-validate"),
}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "samexport.cli", *args], capture_output=True, text=True)


def write_clip(path: Path, frames: int = 4) -> Path:
    import cv2

    scene = cv2.imread(str(PARITY / "scene.png"))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (640, 480))
    for t in range(frames):
        writer.write(np.roll(scene, (6 * t, 10 * t), axis=(0, 1)))
    writer.release()
    return path


def agreement(ours: dict, theirs: dict) -> dict:
    from pycocotools import mask as coco

    same_ids = all(
        [(i["id"], i["category_id"]) for i in a] == [(i["id"], i["category_id"]) for i in b]
        for a, b in zip(ours["instances"], theirs["instances"])
    )
    score = class_score = 0.0
    iou = 1.0
    for a_frame, b_frame in zip(ours["instances"], theirs["instances"]):
        by_id = {i["id"]: i for i in b_frame}
        for a in a_frame:
            b = by_id[a["id"]]
            score = max(score, abs(a["score"] - b["score"]))
            class_score = max(class_score, abs(a["class_score"] - b["class_score"]))
            ma, mb = coco.decode(a["segmentation"]), coco.decode(b["segmentation"])
            union = (ma | mb).sum()
            iou = min(iou, float((ma & mb).sum() / union) if union else 1.0)
    return {
        "same_ids_and_classes": same_ids,
        "instances_per_frame": len(ours["instances"][0]),
        "max_score_diff": score,
        "max_class_score_diff": class_score,
        "min_mask_iou": iou,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=RESULTS / "rapsam_video_backends.json")
    parser.add_argument("--backends", default="onnx,litert,coreai")
    args = parser.parse_args()
    result = {"machine": machine(), "versions": versions(), "clip": "4 frames, 640x480", "backends": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clip = write_clip(folder / "clip.mp4")
        runs = {}
        for backend in ["torch", *args.backends.split(",")]:
            entry: dict = {}
            models = folder / "models"
            if backend in CONVERT:
                start = time.perf_counter()
                done = cli(
                    "convert", "--encoder", "rapsam_r50", "--target", backend, "--input-size", "736x992",
                    "--output-dir", str(models), *CONVERT[backend], "--quiet",
                )  # fmt: skip
                entry["convert_s"] = round(time.perf_counter() - start, 1)
                entry["convert_options"] = " ".join(CONVERT[backend]) or "defaults (checked)"
                if done.returncode:
                    entry["convert_error"] = done.stderr.strip().splitlines()[-1]
                    result["backends"][backend] = entry
                    continue
            doc = folder / f"{backend}.json"
            start = time.perf_counter()
            done = cli(
                "segment", str(clip), "--encoder", "rapsam_r50", "--video", "--backend", backend,
                "--models-dir", str(models), "--output", str(folder / f"{backend}.mp4"), "--json", str(doc),
                "--score-threshold", "0",
            )  # fmt: skip
            entry["segment_s"] = round(time.perf_counter() - start, 1)
            if done.returncode:
                entry["segment_error"] = done.stderr.strip().splitlines()[-1]
            else:
                runs[backend] = json.loads(doc.read_text())
                entry["json_backend"] = runs[backend]["backend"]
                entry["timings_s"] = runs[backend]["timings_s"]
                if backend != "torch":
                    entry["vs_torch"] = agreement(runs[backend], runs["torch"])
            result["backends"][backend] = entry
            args.out.write_text(json.dumps(result, indent=1) + "\n")
            print(backend, json.dumps(entry))
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(render(result))


def render(result: dict) -> str:
    lines = [
        "# RAP-SAM video on every backend (`segment --video`), against `--backend torch`",
        "",
        f"Machine: {result['machine'].get('description')}; torch {result['versions']['torch']}. Clip: "
        f"{result['clip']} (the parity scene moving), exports at 736x992, fixture weights. Made by "
        "`benchmarks/rapsam_video_backends.py`.",
        "",
        "| backend | convert options | convert s | segment s | same ids and classes | max score diff "
        "| max class-score diff | min mask IoU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for backend, e in result["backends"].items():
        v = e.get("vs_torch")
        cells = [
            backend,
            e.get("convert_options", "-")
            + (f" (failed: {e['convert_error']})" if "convert_error" in e else ""),
            str(e.get("convert_s", "-")),
            str(e.get("segment_s", "-"))
            + (f" (failed: {e['segment_error']})" if "segment_error" in e else ""),
        ]
        if v:
            cells += [
                str(v["same_ids_and_classes"]),
                f"{v['max_score_diff']:.2e}",
                f"{v['max_class_score_diff']:.2e}",
                f"{v['min_mask_iou']:.4f}",
            ]
        else:
            cells += ["(reference)" if backend == "torch" else "-", "", "", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
