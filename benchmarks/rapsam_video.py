"""RAP-SAM R50 video instance segmentation on this machine: parity with the official near-online inference
(tests/fixtures/rapsam_video), the per-frame cost of the whole pipeline (PyTorch, split into encoder, tube
head and the app side), the tube head's exports at the official video input size (sizes, checks, times),
`samexport bench` rows of the tube head per tube length, and the annotated clip of `segment --video`.

    .venv/bin/python benchmarks/rapsam_video.py [--out results/linux-x86_64-2core/rapsam_video.json]
        [--steps parity,pipeline,exports,bench,segment] [--render-only]

Fixture weights (the parity fill) and both fixture classifiers. Each step is written to the JSON as soon
as it finishes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from rapsam import cli, cpu_bench  # benchmarks/rapsam.py: the CLI runner and RAP-SAM's bench rows

from samexport.families.rapsam.pipelines import VideoPipeline
from samexport.provenance import machine, versions
from samexport.zoo import torch_session

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "linux-x86_64-2core"
PARITY = ROOT.parent / "shared" / "parity"
FIXTURE = ROOT / "tests" / "fixtures" / "rapsam_video" / "rap_sam_r50.video.npz"
STEPS = ("parity", "pipeline", "exports", "bench", "segment")
VIDEO_INPUT = (736, 992)  # a 640x480 clip through the YouTube-VIS test pipeline: 736x981, padded to /32
CLIP = "clip16"


def rel(ours, ref) -> float:
    ref = np.asarray(ref, np.float64)
    return float(np.abs(np.asarray(ours, np.float64) - ref).max() / np.abs(ref).max())


def model():
    import samexport

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return samexport.build_model("rapsam_r50")


def clip_frames(z, clip: str):
    import cv2

    spec = json.loads(str(z["clips_json"]))[clip]
    scene = cv2.cvtColor(cv2.imread(str(PARITY / "scene.png")), cv2.COLOR_BGR2RGB)
    dy, dx = spec["shift_yx"]
    return [np.roll(scene, (dy * t, dx * t), axis=(0, 1)) for t in range(spec["frames"])]


def parity() -> dict:
    """Every comparison of tests/test_rapsam_video.py, as numbers, per clip."""
    z = np.load(FIXTURE)
    pipeline = VideoPipeline(torch_session("rapsam")[0])
    out = {}
    for clip in ("clip7", "clip3", "clip16"):
        frames = clip_frames(z, clip)
        start = time.perf_counter()
        result = pipeline(frames)
        seconds = time.perf_counter() - start
        row = {
            "frames": len(frames),
            "tubes": [t["end"] for t in result.tubes],
            "same tube split": [t["end"] for t in result.tubes] == z[f"{clip}_tube_ends"].tolist(),
            "tube class logits (rel, worst tube)": max(
                rel(t["class_logits"], z[f"{clip}_tube{k}_class_logits"][0])
                for k, t in enumerate(result.tubes)
            ),
            "same matching": all(
                np.array_equal(t["order"], z[f"{clip}_match{k}"]) for k, t in enumerate(result.tubes) if k
            ),
            "averaged class logits (rel)": rel(result.class_logits, z[f"{clip}_averaged_class_logits"]),
        }
        same, score, area, box = True, 0.0, 0, 0.0
        for t, instances in enumerate(result.frames):
            f = f"{clip}_frame{t}_"
            ours = {(i["query"], i["label"]): i for i in instances}
            official = list(zip(z[f + "query"].tolist(), z[f + "labels"].tolist()))
            same &= set(ours) == set(official)
            matched = [ours[p] for p in official if p in ours]
            score = max(score, float(np.abs(np.array([i["score"] for i in matched]) - z[f + "scores"]).max()))
            area = max(area, int(np.abs(np.array([i["area"] for i in matched]) - z[f + "mask_areas"]).max()))
            box = max(box, float(np.abs(np.array([i["box"] for i in matched]) - z[f + "bboxes"]).max()))
        row.update(
            {
                "same (query, class) instances every frame": bool(same),
                "instance scores (max abs)": score,
                "mask areas (max pixels of 307200)": area,
                "boxes (max abs px)": box,
                "video_instances seconds": round(seconds, 1),
            }
        )
        out[clip] = row
    return out


def pipeline() -> dict:
    """The whole pipeline per frame in PyTorch on the 16-frame fixture clip (tubes 5, 5, 5, 1), timed by
    stage: encoder (preprocessing + backbone + neck, per tube batch), tube head, app side (matching,
    upscaling to 640x480, per-query mask summaries and RLE, instances)."""
    from samexport.families.rapsam import video
    from samexport.modeling.rapsam import VIDEO_RESIZE_SCALE, official_input, upscale_masks

    z, m = np.load(FIXTURE), model()
    frames = clip_frames(z, CLIP)
    ends = video.tube_ends(len(frames))
    stages = {"encoder": 0.0, "tube head": 0.0, "app side": 0.0}
    per_tube = []
    linker, masks, start = video.TubeLinker(), [], 0
    with torch.no_grad():
        for end in ends:
            t0 = time.perf_counter()
            batch = [official_input(f, VIDEO_RESIZE_SCALE) for f in frames[start:end]]
            features = m.image_encoder(torch.cat([x for x, _ in batch]))
            t1 = time.perf_counter()
            classes, logits, queries = m.tube(features)
            t2 = time.perf_counter()
            order = linker.add(classes[0].numpy(), queries[0].numpy())
            ordered = logits[0, torch.as_tensor(order)]
            for t in range(ordered.shape[1]):
                up = upscale_masks(ordered[None, :, t], frames[0].shape[:2], batch[0][1])[0]
                masks.append(video.QueryMasks.from_logits(up.numpy()))
            t3 = time.perf_counter()
            stages["encoder"] += t1 - t0
            stages["tube head"] += t2 - t1
            stages["app side"] += t3 - t2
            per_tube.append(
                {"frames": end - start, "encoder_s": t1 - t0, "tube_head_s": t2 - t1, "app_s": t3 - t2}
            )
            start = end
        t4 = time.perf_counter()
        video.video_instances(masks, linker.class_logits(), num_things=40)
        stages["app side"] += time.perf_counter() - t4
    n = len(frames)
    return {
        "frames": n,
        "input": list(VIDEO_INPUT),
        "threads": torch.get_num_threads(),
        "per_frame_ms": {k: round(1e3 * v / n, 1) for k, v in stages.items()},
        "total_per_frame_ms": round(1e3 * sum(stages.values()) / n, 1),
        "per_tube": [{k: round(v, 3) if isinstance(v, float) else v for k, v in t.items()} for t in per_tube],
    }


def exports(folder: Path) -> dict:
    """`samexport convert --target all --input-size 736x992`: every target's tube head, checked."""
    seconds = cli(
        "convert",
        "--encoder",
        "rapsam_r50",
        "--target",
        "all",
        "--input-size",
        "x".join(map(str, VIDEO_INPUT)),
        "--points",
        "1",
        "--output-dir",
        str(folder),
        "--quiet",
    )
    manifest = json.loads(next(folder.glob("*.export.json")).read_text())
    return {
        "wall_s": round(seconds, 1),
        "files_mb": {
            f["path"]: round(f["bytes"] / 1e6, 1)
            for parts in manifest["files"].values()
            for part, f in parts.items()
            if part in ("encoder", "tube")
        },
        "tube_worst": {
            target: {
                output: {k: r.get(k) for k in ("psnr_db", "rel", "max_abs")}
                for output, r in report["tube"]["worst"].items()
            }
            for target, report in manifest["validation"].items()
        },
        "tube_passed": {
            target: report["tube"]["passed"] for target, report in manifest["validation"].items()
        },
        "litert_tube_inference": manifest["litert"]["tube"]["inference"],
        "timings_s": {k: v for k, v in manifest["timings_s"].items() if "tube" in k},
    }


def segment(folder: Path) -> dict:
    """`samexport segment clip.mp4 --video` on the 16-frame fixture clip (MPEG-4), the annotated clip kept."""
    import cv2

    z = np.load(FIXTURE)
    clip = folder / "clip16.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 8, (640, 480))
    for frame in clip_frames(z, CLIP):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    video, document = RESULTS / "rapsam_video.mp4", folder / "instances.json"
    seconds = cli(
        "segment",
        str(clip),
        "--encoder",
        "rapsam_r50",
        "--video",
        "--output",
        str(video),
        "--json",
        str(document),
        "--force",
    )
    d = json.loads(document.read_text())
    return {
        "command": "samexport segment clip16.mp4 --encoder rapsam_r50 --video --output rapsam_video.mp4 "
        "--json instances.json",
        "wall_s": round(seconds, 1),
        "frames": d["frames"],
        "tubes": [[t["start"], t["end"]] for t in d["tubes"]],
        "instances_drawn_per_frame": [len(f) for f in d["instances"]],
        "timings_s": d["timings_s"],
        "video_bytes": video.stat().st_size,
        "json_bytes": document.stat().st_size,
    }


def render(d: dict) -> str:
    lines = [f"# RAP-SAM R50 video instance segmentation on {d['machine']['description']}", ""]
    lines += [
        f"Versions: {d['versions']}",
        "",
        "Fixture weights (the parity fill): the masks are meaningless, ",
    ]
    lines[-1] += "the computation and its cost are not."
    lines += ["", "## Parity with the official near-online inference (tests/fixtures/rapsam_video)", ""]
    clips = list(d["parity"])
    keys = [k for k in d["parity"][clips[0]] if k not in ("frames",)]
    lines += ["| | " + " | ".join(f"{c} ({d['parity'][c]['frames']} frames)" for c in clips) + " |"]
    lines += ["|---|" + "---|" * len(clips)]
    for k in keys:
        cells = []
        for c in clips:
            v = d["parity"][c][k]
            cells.append(f"{v:.2e}" if isinstance(v, float) and k != "video_instances seconds" else str(v))
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    p = d.get("pipeline")
    if p:
        lines += ["", f"## Per-frame cost, PyTorch CPU, {p['threads']} threads, {p['frames']} frames at "]
        lines[-1] += f"{p['input'][0]}x{p['input'][1]}"
        lines += ["", "| stage | ms per frame |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in p["per_frame_ms"].items()]
        lines += [f"| **whole pipeline** | **{p['total_per_frame_ms']}** |", ""]
        lines += ["| tube | frames | encoder s | tube head s | app side s |", "|---|---|---|---|---|"]
        lines += [
            f"| {i} | {t['frames']} | {t['encoder_s']} | {t['tube_head_s']} | {t['app_s']} |"
            for i, t in enumerate(p["per_tube"])
        ]
    e = d.get("exports")
    if e:
        lines += [
            "",
            f"## Exports at {VIDEO_INPUT[0]}x{VIDEO_INPUT[1]} (`convert --target all`, {e['wall_s']} s)",
            "",
        ]
        lines += ["| file | MB |", "|---|---|"] + [f"| {k} | {v} |" for k, v in e["files_mb"].items()]
        lines += ["", "| target | tube check | output | PSNR dB | max rel |", "|---|---|---|---|---|"]
        for target, worst in e["tube_worst"].items():
            for output, r in worst.items():
                lines.append(
                    f"| {target} | {'PASS' if e['tube_passed'][target] else 'FAIL'} | {output} | "
                    f"{r['psnr_db']:.1f} | {r['rel']:.1e} |"
                )
        lines += ["", f"LiteRT tube inference: {e['litert_tube_inference']}.", ""]
        lines += ["Steps: " + ", ".join(f"{k} {v:.1f} s" for k, v in e["timings_s"].items())]
    if d.get("bench"):
        from samexport.bench import report

        lines += ["", "## `samexport bench --device cpu --encoder rapsam_r50 --points 1` (800x1088)", ""]
        lines.append(report.to_markdown(d["bench"]))
    s = d.get("segment")
    if s:
        lines += [
            "",
            "## `segment --video`",
            "",
            f"`{s['command']}`: {s['wall_s']} s wall, {s['frames']} frames, ",
        ]
        lines[-1] += (
            f"tubes {s['tubes']}, instances drawn per frame (score >= 0.5) {s['instances_drawn_per_frame']}; "
        )
        lines[-1] += (
            f"timings {s['timings_s']}; rapsam_video.mp4 {s['video_bytes']} bytes, "
            f"JSON {s['json_bytes']} bytes."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=RESULTS / "rapsam_video.json")
    parser.add_argument("--render-only", action="store_true")
    parser.add_argument("--steps", default=",".join(STEPS), help="steps to (re)measure; the others are kept")
    args = parser.parse_args()
    document = json.loads(args.out.read_text()) if args.out.exists() else {}
    if not args.render_only:
        document.update(machine=machine(), versions=versions())
        torch.set_num_threads(2)
        with tempfile.TemporaryDirectory() as tmp:
            steps = {
                "parity": parity,
                "pipeline": pipeline,
                "exports": lambda: exports(Path(tmp) / "exports"),
                "bench": lambda: cpu_bench(Path(tmp), points="1"),
                "segment": lambda: segment(Path(tmp)),
            }
            for step in args.steps.split(","):
                start = time.perf_counter()
                document[step] = steps[step]()
                print(f"{step}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
                args.out.write_text(json.dumps(document, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(render(document))


if __name__ == "__main__":
    main()
