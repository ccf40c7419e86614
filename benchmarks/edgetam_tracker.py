"""EdgeTAM's tracker on this machine: each part's latency and the cost of one tracked frame, on PyTorch and
on the float32 ONNX and LiteRT exports, in one run, on the parity fixture clip (320x240, 8 frames) with its
prompts (a click on object 1 and a box on object 2, frame 0). Fixture weights. Median of `--runs` calls per
part with the inputs a real tracking step feeds (recorded from the tracker); the per-frame cost is the median
wall time of the forward pass's 7 tracked frames (both objects: one encoder call, then per object memory
attention, track decoder and memory encoder), and the masks' agreement with the official ones. PyTorch also
runs with a small memory bank (3 memory slots: 2 conditioning frames and the most recent one; 5 pointers),
which is not the official configuration (its IoU says how far it strays on this clip).

    .venv/bin/python benchmarks/edgetam_tracker.py [--runs 5] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from samexport.provenance import machine, versions

RESULTS = Path(__file__).parent / "results" / "linux-x86_64-2core"
PARITY = Path(__file__).resolve().parents[2] / "shared" / "parity"


class Recorder:
    """Keeps the last feeds of every part a session runs."""

    def __init__(self, session):
        self.session, self.feeds = session, {}
        original = session.run

        def run(part, feeds):
            self.feeds[part] = {k: np.array(v) for k, v in feeds.items()}
            return original(part, feeds)

        session.run = run


def track(predictor, video) -> dict:
    prompts = json.loads(str(video["prompts_json"]))
    click, box = prompts["obj1_click_f0"], prompts["obj2_box_f0"]
    state = predictor.init_state(frames=list(video["frames"]))
    predictor.add_new_points_or_box(state, 0, 1, points=click["points"], labels=click["labels"])
    predictor.add_new_points_or_box(state, 0, 2, box=box["box"])
    start, times, masks = time.perf_counter(), [], []
    for _, _, m in predictor.propagate_in_video(state):
        times.append(time.perf_counter() - start)
        masks.append(m[:, 0])
        start = time.perf_counter()
    masks = np.stack(masks)
    official = video["fwd_video_logits"]
    iou = ((masks > 0) & (official > 0)).sum((2, 3)) / ((masks > 0) | (official > 0)).sum((2, 3))
    return {
        "tracked_frame_s_median": round(statistics.median(times[1:]), 3),
        "tracked_frames": len(times) - 1,
        "objects": 2,
        "mask_iou_vs_official_min": round(float(iou.min()), 6),
        "logit_max_abs_diff_vs_official": float(np.abs(masks - official).max()),
    }


def part_latency(predictor, runs: int) -> dict:
    session = predictor.session
    out = {}
    for part, feeds in predictor.recorder.feeds.items():
        session.run(part, feeds)  # warm-up
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            session.run(part, feeds)
            times.append(time.perf_counter() - start)
        out[part] = round(statistics.median(times) * 1000, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "edgetam_tracker.json")
    args = parser.parse_args()

    import samexport

    video = np.load(PARITY / "edgetam.video.npz")
    sys.path.insert(0, str(PARITY))
    import torch
    from fill import load_manifest, make_checkpoint

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "edgetam.pt"
        torch.save(
            make_checkpoint(load_manifest(PARITY / "edgetam.manifest.json"), salt=str(video["salt"])),
            checkpoint,
        )
        start = time.perf_counter()
        convert = subprocess.run(
            [
                sys.executable,
                "-m",
                "samexport.cli",
                "convert",
                "--encoder",
                "edgetam",
                "--target",
                "onnx,litert",
                "--precision",
                "fp32",
                "--points",
                "1,2",
                "--checkpoint",
                str(checkpoint),
                "--output-dir",
                tmp,
            ],
            capture_output=True,
            text=True,
        )
        if convert.returncode:
            raise SystemExit(convert.stderr)
        convert_s = round(time.perf_counter() - start, 1)
        manifest = next(Path(tmp).glob("*.export.json"))
        sizes = {
            p.name: round(p.stat().st_size / 1e6, 1)
            for p in sorted([*Path(tmp).glob("*.onnx"), *Path(tmp).glob("*.tflite")])
        }
        from samexport.families.edgetam.tracker import TrackerConfig

        small = TrackerConfig(recent_frames=1, cond_slots=2, max_obj_ptrs=4)
        for backend in ("torch", "torch, small memory bank", "onnx", "litert"):
            if backend.startswith("torch"):
                predictor = samexport.build_video_predictor(
                    "edgetam", checkpoint=checkpoint, config=small if "small" in backend else None
                )
            else:
                predictor = samexport.build_video_predictor("edgetam", backend=backend, manifest=manifest)
            predictor.recorder = Recorder(predictor.session)
            row = track(predictor, video)
            row["part_ms_median"] = part_latency(predictor, args.runs)
            row["runners"] = predictor.session.describe()["runners"]
            row["memory_slots"] = predictor.config.memory_slots
            row["pointer_slots"] = predictor.config.pointer_slots
            rows[backend] = row
    result = {
        "command": "benchmarks/edgetam_tracker.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "versions": versions(),
        "convert_s": convert_s,
        "files_mb": sizes,
        "backends": rows,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# EdgeTAM tracker: per part and per tracked frame",
        "",
        f"`{result['command']}`; {result['machine'].get('cpu', '')}; fixture weights; the parity clip "
        "(320x240, 8 frames, 2 objects).",
        "",
        "| backend | memory / pointer slots | encoder ms | prompt decoder ms | track decoder ms "
        "| memory attention ms | memory encoder ms | tracked frame s (2 objects) "
        "| min mask IoU vs official |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for backend, row in rows.items():
        p = row["part_ms_median"]
        lines.append(
            f"| {backend} | {row['memory_slots']} / {row['pointer_slots']} | {p.get('encoder')} "
            f"| {p.get('prompt_decoder')} | {p.get('track_decoder')} | "
            f"{p.get('memory_attention')} | {p.get('memory_encoder')} | {row['tracked_frame_s_median']} | "
            f"{row['mask_iou_vs_official_min']} |"
        )
    lines += [
        "",
        f"ONNX and LiteRT float32 conversion (validation included): {convert_s} s; files (MB): {sizes}.",
        "",
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
