"""Golden files shared by Python and the Swift harness tests (`ios_harness/Tests/Fixtures/`).

Python computes every expected value with samexport's own code (the official pre/post-processing,
the statistics, the result schema, the devicectl and JetsamEvent parsers) and writes it; the Swift
XCTests (GoldenFixtureTests.swift) read the same files, and `tests/test_harness_golden.py` fails when
Python no longer produces exactly these files. Regenerate after a deliberate change:

    .venv/bin/python tests/harness_golden.py
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Dict

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "ios_harness" / "Tests" / "Fixtures"
SIZES = [(640, 480), (480, 640), (1000, 1), (1500, 2000), (3024, 4032)]
SAM_TOKEN_COUNTS = [2, 3, 4, 5, 6, 8, 9, 16, 17]
MASK_OUTPUT = (40, 30)  # width, height of the upscaled masks in mask_postprocessing.json


def low_res_value(row: int, column: int) -> float:
    """The 256x256 test logits, by formula (GoldenFixtureTests.swift computes the same)."""
    return math.sin(0.05 * row) * math.cos(0.03 * column) + 0.001 * (row - column)


def dumps(data) -> str:
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def contract_geometry() -> Dict:
    from samexport.modeling.transforms import (
        efficient_sam_transform_coords,
        longest_side_shape,
        sam_transform_coords,
    )

    cases = []
    for width, height in SIZES:
        points = [[0.0, 0.0], [width / 3, height / 5], [width - 1.0, height - 1.0], [-5.0, 3.0]]
        new_h, new_w = longest_side_shape(height, width)
        sam = sam_transform_coords(points, (height, width)).tolist()
        efficient = efficient_sam_transform_coords(points, (height, width)).tolist()
        cases.append(
            {
                "family": "sam",
                "width": width,
                "height": height,
                "resized": [new_w, new_h],
                "points": points,
                "model_points": [[round(x, 4), round(y, 4)] for x, y in sam],
            }
        )
        cases.append(
            {
                "family": "efficientsam",
                "width": width,
                "height": height,
                "resized": [1024, 1024],
                "points": points,
                "model_points": [[round(x, 4), round(y, 4)] for x, y in efficient],
            }
        )
    return {"cases": cases}


def prompt_tokens() -> Dict:
    """Token rows (x, y, label) per prompt: the official layout (the models' prompt_tokens), padded to the
    decoder's next enumerated token count with the family's padding token."""
    from samexport.families import DecoderSignature
    from samexport.families.registry import get_spec

    models = {
        "sam": get_spec("tinyvit").build_meta(),
        "efficientsam": get_spec("efficientsam_ti").build_meta(),
    }
    prompts = [
        {"clicks": [[100.0, 200.0, True]], "box": None},
        {"clicks": [[10.0, 20.0, False]], "box": [50.0, 60.0, 150.0, 260.0]},
        {"clicks": [], "box": [5.0, 5.0, 600.0, 470.0]},
        {"clicks": [[x * 37.0, 5.0 + x, x % 2 == 0] for x in range(6)], "box": None},
        {"clicks": [[x * 11.0, 0.0, True] for x in range(8)], "box": None},
    ]
    cases = []
    for family, model in models.items():
        for prompt in prompts:
            clicks, box = prompt["clicks"], prompt["box"]
            kwargs = {}
            if clicks:
                kwargs.update(points=[c[:2] for c in clicks], labels=[1 if c[2] else 0 for c in clicks])
            if box:
                kwargs["box"] = box
            coords, labels = model.prompt_tokens((480, 640), **kwargs)
            rows = [
                [round(float(x), 4), round(float(y), 4), float(label)]
                for (x, y), label in zip(coords[0].tolist(), labels[0].tolist())
            ]
            if family == "sam":
                count = next(n for n in SAM_TOKEN_COUNTS if n >= len(rows))
                rows += [[0.0, 0.0, -1.0]] * (count - len(rows))
            cases.append(
                {
                    "family": family,
                    "width": 640,
                    "height": 480,
                    "token_counts": SAM_TOKEN_COUNTS if family == "sam" else [6],
                    "clicks": clicks,
                    "box": box,
                    "tokens": rows,
                    "function": DecoderSignature.function_name(1, len(rows)),
                }
            )
    return {"cases": cases}


def mask_postprocessing() -> Dict:
    import torch

    from samexport.modeling.transforms import efficient_sam_postprocess_masks, sam_postprocess_masks

    low_res = torch.tensor(
        [[low_res_value(r, c) for c in range(256)] for r in range(256)], dtype=torch.float32
    )[None, None]
    width, height = MASK_OUTPUT
    cases = []
    for family, fn in (("sam", sam_postprocess_masks), ("efficientsam", efficient_sam_postprocess_masks)):
        logits = fn(low_res, (height, width))[0, 0].reshape(-1).tolist()
        cases.append(
            {"family": family, "width": width, "height": height, "logits": [round(v, 5) for v in logits]}
        )
    return {
        "low_res": "sin(0.05 * row) * cos(0.03 * column) + 0.001 * (row - column), 256x256, float32",
        "cases": cases,
    }


def latency_stats() -> Dict:
    from samexport.bench.stats import summarize

    cases = [[10.0, 12.0, 11.0, 30.0, 9.0], [48.0, 49.5, 48.9, 50.1, 48.7, 51.2], [7.25]]
    return {
        "cases": [
            {"samples_ms": s, "stats": {k: round(v, 6) for k, v in summarize(s).items()}} for s in cases
        ]
    }


def breadcrumb() -> Dict:
    return {
        "plan_id": "0123456789abcdef",
        "job_id": "RepViTSAMEncoder|encoder|-|all",
        "summary": "RepViT-SAM encoder on all",
        "started_utc": "2026-11-28T10:00:00Z",
        "stage": "first prediction",
        "available_memory_mb": 1800.0,
        "footprint_mb": 1350.5,
    }


def result_file() -> Dict:
    """A result file in the app's schema (samexport.bench/2): one measured row with its compute-plan
    placement, one out-of-memory row with its jetsam evidence."""
    from samexport.bench.jetsam import WEAKER
    from samexport.bench.stats import summarize
    from samexport.coreml_placement import summarize as placement

    job = {
        "model": "repvit",
        "title": "RepViT-SAM",
        "family": "sam",
        "precision": "fp16",
        "compute_unit": "all",
        "file": "RepViTSAMEncoder.mlpackage",
        "gmacs": 113.3,
        "part": "encoder",
        "points": None,
        "tokens": None,
    }
    samples = [48.0, 49.5, 48.9, 50.1, 48.7]
    ok = {
        **job,
        "job_id": "RepViTSAMEncoder|encoder|-|all",
        "status": "ok",
        "samples_ms": samples,
        "stats": {k: round(v, 6) for k, v in summarize(samples).items()},
        "compile_ms": 950.0,
        "load_ms": 310.0,
        "load_warm_ms": 42.0,
        "first_ms": 160.0,
        "peak_rss_mb": 402.3,
        "placement": placement([("conv", "ane", 0.9), ("softmax", "gpu", 0.1)]),
    }
    oom = {
        **job,
        "file": "SAMViTBEncoder.mlpackage",
        "model": "sam_vit_b",
        "title": "SAM ViT-B",
        "job_id": "SAMViTBEncoder|encoder|-|all",
        "status": "oom",
        "oom_evidence": WEAKER,
        "error": "ended during first prediction (the launch stopped before the job finished)",
        "peak_rss_mb": 1350.5,
    }
    return {
        "schema": "samexport.bench/2",
        "created_utc": "2026-11-28T10:00:00Z",
        "machine": {
            "description": "iPhone13,2, 6 cores, 4 GiB RAM, iOS 18.1",
            "cpu": "iPhone13,2",
            "cores": 6,
            "ram_gib": 3.7,
            "os": "iOS 18.1",
            "thermal_state": "nominal",
        },
        "versions": {"samexport": "0.1.0", "harness": "0.1.0", "os": "iOS 18.1"},
        "device": {"kind": "iphone", "label": "Core ML, iPhone 12"},
        "options": {
            "target": "coreml",
            "runs": 5,
            "warmup": 1,
            "points": [1],
            "compress": "none",
            "memory_metric": "phys_footprint (the figure jetsam compares with the app's limit), MB",
        },
        "rows": [ok, oom],
        "harness": {"plan_id": "0123456789abcdef", "finished": True, "launches": 2},
    }


def devicectl_and_jetsam() -> Dict[str, str]:
    from samexport.bench.ios import parse_devicectl
    from samexport.bench.jetsam import kill_of, parse_report

    devices = {
        "result": {
            "devices": [
                {
                    "identifier": "5B3C1F0E-CORE",
                    "deviceProperties": {"name": "Test iPhone"},
                    "hardwareProperties": {
                        "platform": "iOS",
                        "reality": "physical",
                        "udid": "00008101-000A",
                        "marketingName": "iPhone 12",
                    },
                    "connectionProperties": {"tunnelState": "disconnected", "pairingState": "paired"},
                },
                {
                    "identifier": "WATCH",
                    "deviceProperties": {"name": "Watch"},
                    "hardwareProperties": {"platform": "watchOS", "reality": "physical"},
                    "connectionProperties": {},
                },
            ]
        }
    }
    report = (
        '{"bug_type":"298","timestamp":"2026-11-28 10:00:00.00 +0000","os_version":"iPhone OS 18.1"}\n'
        + json.dumps(
            {
                "largestProcess": "SAMBench",
                "memoryStatus": {"pageSize": 16384},
                "processes": [
                    {"name": "SpringBoard", "pid": 58, "rpages": 20000},
                    {"name": "SAMBench", "pid": 812, "rpages": 89600, "reason": "per-process-limit"},
                ],
            },
            indent=2,
        )
        + "\n"
    )
    expected = {
        "devicectl": parse_devicectl(devices),
        "jetsam": kill_of(parse_report(report), file="JetsamEvent-2026-11-28-100000.ips"),
    }
    return {
        "devicectl_devices.json": dumps(devices),
        "JetsamEvent-2026-11-28-100000.ips": report,
        "python_expectations.json": dumps(expected),
    }


def everything() -> Dict:
    """Everything mode's host-side steps (samexport.amg), for EverythingMode.swift."""
    import numpy as np
    import torch

    from samexport import amg

    grids = [{"per_side": n, "points": amg.build_point_grid(n).tolist()} for n in (1, 4, 16)]
    crops = []
    for width, height, layers in ((640, 480, 1), (4032, 3024, 2), (1000, 1, 1)):
        boxes, layer_of = amg.generate_crop_boxes((height, width), layers, 512 / 1500)
        crops.append({"width": width, "height": height, "layers": layers, "boxes": boxes, "layer": layer_of})
    width, height = 11, 7
    centres = [(2, 1), (8, 5), (5, 3), (0, 6)]
    logits = [
        [
            round(4 * math.exp(-((i % width - cx) ** 2 + (i // width - cy) ** 2) / (3 + k)) - 1.5, 4)
            for i in range(width * height)
        ]
        for k, (cx, cy) in enumerate(centres)
    ]
    logits.append([-5.0] * (width * height))
    scores = amg.stability_score(torch.tensor(logits).view(-1, height, width), 0.0, 1.0).tolist()
    stability = [None if math.isnan(v) else v for v in scores]  # JSON has no NaN: null stands for it
    masks = [[v > 0 for v in row] for row in logits]
    boxes = amg.masks_to_boxes(torch.tensor(masks).view(-1, height, width)).tolist()
    nms_boxes = [
        [0, 0, 10, 10],
        [0, 0, 10, 10],
        [5, 0, 15, 10],
        [1, 1, 11, 11],
        [100, 100, 120, 130],
        [0, 0, 10, 10],
    ]
    nms_scores = [0.5, 0.9, 0.8, 0.5, 0.1, 0.5]
    nms = [
        {"threshold": t, "keep": amg.box_nms(np.array(nms_boxes), np.array(nms_scores), t).tolist()}
        for t in (1.0, 0.7, 1 / 3, 0.3, 0.0)
    ]
    edge_boxes = [[0, 0, 100, 100], [10, 10, 395, 100], [100, 100, 200, 200], [5, 150, 380, 320]]
    edges = [
        {
            "crop_box": crop,
            "image_box": [0, 0, 640, 480],
            "near": amg.near_crop_edge(torch.tensor(edge_boxes), crop, [0, 0, 640, 480]).tolist(),
        }
        for crop in ([0, 0, 402, 322], [239, 159, 640, 480], [0, 0, 640, 480])
    ]
    from samexport.predictor import batch_plan

    splits = [
        {
            "count": count,
            "batch_sizes": [1, 4, 16, 64],
            "calls": [{"start": a, "count": n, "padded": p} for a, n, p in batch_plan(count, [1, 4, 16, 64])],
        }
        for count in (1, 3, 4, 5, 17, 64, 70, 256)
    ]
    return {
        "grids": grids,
        "crops": crops,
        "masks": {"width": width, "height": height, "logits": logits, "stability": stability, "boxes": boxes},
        "nms": {"boxes": nms_boxes, "scores": nms_scores, "cases": nms},
        "crop_edge": {"boxes": edge_boxes, "cases": edges},
        "batches": splits,
    }


PANOPTIC_QUERIES, PANOPTIC_SIZE = 6, (7, 5)  # queries; width, height of the upscaled masks


def panoptic_class_value(query: int, column: int) -> float:
    """The test class logits, by formula (GoldenFixtureTests.swift computes the same): query q favours
    class 21 * q mod 133 (things and stuff alike), query 5 the no-object column."""
    favoured = 133 if query == 5 else 7 * query * 3 % 133
    return 8.0 * (column == favoured) + 0.01 * math.sin(query + 0.1 * column)


def panoptic_mask_value(query: int, row: int, column: int) -> float:
    return math.sin(0.9 * query + 0.7 * row) * math.cos(0.5 * query - 0.6 * column) * 3.0


def panoptic_fusion() -> Dict:
    """The official panoptic fusion (samexport.families.rapsam.panoptic.fuse) on formula inputs, with the
    official thresholds and with none."""
    import torch

    from samexport.families.rapsam.panoptic import fuse

    width, height = PANOPTIC_SIZE
    classes = torch.tensor(
        [[panoptic_class_value(q, c) for c in range(134)] for q in range(PANOPTIC_QUERIES)],
        dtype=torch.float32,
    )
    masks = torch.tensor(
        [
            [[panoptic_mask_value(q, r, c) for c in range(width)] for r in range(height)]
            for q in range(PANOPTIC_QUERIES)
        ],
        dtype=torch.float32,
    )
    cases = []
    for object_threshold, iou_threshold in ((0.8, 0.8), (0.0, 0.0), (0.8, 0.3)):
        seg, segments = fuse(classes, masks, object_threshold, iou_threshold)
        cases.append(
            {
                "object_mask_threshold": object_threshold,
                "iou_threshold": iou_threshold,
                "map": seg.reshape(-1).tolist(),
                "segments": segments,
            }
        )
    return {"queries": PANOPTIC_QUERIES, "width": width, "height": height, "cases": cases}


VIDEO_QUERIES, VIDEO_DIM, VIDEO_CLASSES, VIDEO_THINGS = 12, 8, 6, 5  # the no-object column is extra
VIDEO_FRAMES, VIDEO_SIZE, VIDEO_MAX_INSTANCES = 7, (8, 6), 20  # frames; width, height; instances kept


def video_mask_value(tube: int, frame: int, query: int, row: int, column: int) -> float:
    """The test mask logits of a tube's own query in one of its frames, by formula (GoldenFixtureTests.swift
    computes the same)."""
    return (
        3.0
        * math.sin(0.9 * query + 0.7 * row + 0.3 * frame)
        * math.cos(0.5 * query - 0.6 * column + 0.2 * tube)
    )


def video_tracks() -> Dict:
    """samexport.video on a clip of three tubes: each tube's queries are the same objects in another order
    (plus a little noise), so matching has to undo the shuffle; expected orders, averaged class logits and
    every frame's instances."""
    import numpy as np

    from samexport.families.rapsam import video

    rng = np.random.default_rng(7)
    objects = rng.standard_normal((VIDEO_QUERIES, VIDEO_DIM)).astype(np.float32)
    classes = rng.standard_normal((VIDEO_QUERIES, VIDEO_CLASSES + 1)).astype(np.float32) * 3
    ends = video.tube_ends(VIDEO_FRAMES)
    width, height = VIDEO_SIZE
    linker, summaries, tubes = video.TubeLinker(), [], []
    for k, end in enumerate(ends):
        shuffle = rng.permutation(VIDEO_QUERIES) if k else np.arange(VIDEO_QUERIES)
        embeddings = objects[shuffle] + 0.05 * rng.standard_normal((VIDEO_QUERIES, VIDEO_DIM)).astype(
            np.float32
        )
        logits = classes[shuffle] + 0.5 * rng.standard_normal(classes.shape).astype(np.float32)
        order = linker.add(logits, embeddings)
        start = ends[k - 1] if k else 0
        for t in range(end - start):
            own = np.array(
                [
                    [[video_mask_value(k, t, q, r, c) for c in range(width)] for r in range(height)]
                    for q in range(VIDEO_QUERIES)
                ],
                dtype=np.float32,
            )
            summaries.append(video.QueryMasks.from_logits(own[order]))
        tubes.append(
            {
                "end": end,
                "class_logits": logits.reshape(-1).tolist(),
                "query_embeddings": embeddings.reshape(-1).tolist(),
                "order": order.tolist(),
            }
        )
    averaged = linker.class_logits()
    found = video.candidates(averaged, VIDEO_THINGS, VIDEO_MAX_INSTANCES)
    frames = [
        [{k: v for k, v in i.items() if k != "rle"} for i in video.frame_instances(found, masks)]
        for masks in summaries
    ]
    return {
        "queries": VIDEO_QUERIES,
        "dim": VIDEO_DIM,
        "classes": VIDEO_CLASSES,
        "things": VIDEO_THINGS,
        "max_instances": VIDEO_MAX_INSTANCES,
        "width": width,
        "height": height,
        "frames": VIDEO_FRAMES,
        "tube_ends_by_length": {str(n): video.tube_ends(n) for n in (1, 2, 3, 4, 7, 15, 16, 17, 23, 40)},
        "tubes": tubes,
        "averaged_class_logits": averaged.reshape(-1).tolist(),
        "instances": frames,
    }


TRACK_VIDEO = (12, 10)  # width, height of the memory tracker's toy clip
DIGITS = 5  # decimals of the toy parts' outputs
TRACK_FRAMES = 8


class ToyTrackerPart:
    """One of the tracker's parts at toy sizes: outputs by formula from the inputs (so that every input the
    tracker builds changes them), each call recorded."""

    description, runtime = "toy part (harness golden file)", "numpy"

    def __init__(self, part: str, calls: list) -> None:
        self.part, self.calls = part, calls

    def run(self, feeds):
        import numpy as np

        f = {k: np.asarray(v, np.float32) for k, v in feeds.items()}
        mix = np.float32(sum(float((v.reshape(-1) * np.cos(np.arange(v.size))).sum()) for v in f.values()))
        if self.part == "encoder":
            pooled = f["image"].reshape(3, 4, 2, 4, 2).mean(axis=(2, 4))  # (3, 4, 4)
            out = {
                "visionFeatures": np.tanh(pooled[:2, ::2, ::2] + pooled[2:, 1::2, 1::2])[None],
                "highResFeatures0": np.sin(pooled.sum(0))[None, None],
                "highResFeatures1": np.cos(pooled[1, ::2, ::2])[None, None],
            }
        elif self.part in ("prompt_decoder", "track_decoder"):
            rows, cols = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
            tokens = np.arange(4).reshape(4, 1, 1)
            masks = (
                3 * np.sin(0.9 * rows + 0.5 * tokens + mix) * np.cos(0.7 * cols - 0.3 * tokens + 0.5 * mix)
            )
            masks = masks + 0.8 * np.cos(2.1 * rows * cols + mix) - 0.2 * tokens
            out = {
                "lowResMasks": masks[None],
                "iouScores": (0.5 + 0.4 * np.sin(mix * np.arange(1, 5)))[None],
                "objectPointers": np.sin(mix + np.arange(16).reshape(1, 4, 4)),
                "objectScore": np.array([[4 * np.sin(1.7 * mix)]]),
            }
        elif self.part == "memory_attention":
            out = {"pixFeatures": f["visionFeatures"] + 0.1 * np.sin(mix + np.arange(8).reshape(1, 2, 2, 2))}
        else:
            area = float((f["maskLogits"] > 0).sum())
            out = {
                "memory": (
                    1.2345 * np.sin(np.arange(8) * 1.3 + 0.01 * area + f["binarize"][0] + mix)
                ).reshape(1, 4, 2)
            }
        # rounded to the digits the golden file keeps, so that Python's tracker uses exactly what Swift reads
        out = {k: np.round(np.asarray(v, np.float64), DIGITS).astype(np.float32) for k, v in out.items()}
        self.calls.append((self.part, f, out))
        return out, {}


def numbers(values) -> str:
    """float32 values as shortest decimals, space-separated (each reads back as the same float32)."""
    import numpy as np

    return " ".join(str(np.float32(x)) for x in np.asarray(values, np.float32).reshape(-1))


def tracker_image(tracker, frame):
    """The encoder input the tracker makes of a frame."""
    from samexport.modeling import transforms

    return transforms.sam2_video_preprocess(frame, tracker.config.image_size)


def memory_tracker() -> Dict:
    """samexport's EdgeTAM tracker (`VideoTracker`) on toy parts: every part call's inputs and outputs and
    every result of a scripted session (prompts on frame 0, propagation, corrections with and without the old
    points, a third conditioning frame, reverse propagation). The Swift tracker replays the outputs and must
    build exactly the same inputs and results."""
    import numpy as np

    from samexport.families.edgetam.tracker import TrackerConfig, VideoTracker
    from samexport.parts import Function, Interface, Tensor
    from samexport.runtime import Session

    config = TrackerConfig(
        num_maskmem=3, recent_frames=2, cond_slots=2, max_obj_ptrs=4, fill_hole_area=2, image_size=8
    )
    s, p = config.memory_slots, config.pointer_slots

    def interface(part, inputs, outputs):
        tensors = tuple(Tensor(n, shape, n) for n, shape in inputs)
        return Interface(
            part, part, tensors, tuple(Tensor(n, (1,), n) for n in outputs), (Function("main", dict(inputs)),)
        )

    decoder_outputs = ("lowResMasks", "iouScores", "objectPointers", "objectScore")
    features = [
        ("pixFeatures", (1, 2, 2, 2)),
        ("highResFeatures0", (1, 1, 4, 4)),
        ("highResFeatures1", (1, 1, 2, 2)),
    ]
    interfaces = {
        "encoder": interface(
            "encoder", [("image", (1, 3, 8, 8))], ("visionFeatures", "highResFeatures0", "highResFeatures1")
        ),
        "prompt_decoder": interface(
            "prompt_decoder",
            features
            + [
                ("points", (1, "N", 3)),
                ("maskInput", (1, 1, 8, 8)),
                ("hasMaskInput", (1,)),
                ("noMemory", (1,)),
            ],
            decoder_outputs,
        ),
        "track_decoder": interface("track_decoder", features, decoder_outputs),
        "memory_attention": interface(
            "memory_attention",
            [
                ("visionFeatures", (1, 2, 2, 2)),
                ("memory", (s, 4, 2)),
                ("memoryTemporal", (s, config.num_maskmem)),
                ("memoryValid", (s,)),
                ("objectPointers", (p, 4)),
                ("pointerValid", (p,)),
            ],
            ("pixFeatures",),
        ),
        "memory_encoder": interface(
            "memory_encoder",
            [("visionFeatures", (1, 2, 2, 2)), ("maskLogits", (1, 1, 8, 8)), ("binarize", (1,))],
            ("memory",),
        ),
    }
    calls: list = []
    session = Session(
        "toy", "edgetam", interfaces, {part: ToyTrackerPart(part, calls) for part in interfaces}
    )
    tracker = VideoTracker(session, config)
    width, height = TRACK_VIDEO
    rng = np.random.default_rng(11)
    frames = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(TRACK_FRAMES)]
    state = tracker.init_state(frames=frames)
    steps = []

    def result(frame_idx, obj_ids, masks):
        return {
            "frame": int(frame_idx),
            "objects": list(obj_ids),
            "video_logits": numbers(np.round(masks, 4)),
        }

    def prompt(frame, obj, points=None, labels=None, box=None, clear=True):
        first = len(calls)
        out = tracker.add_new_points_or_box(
            state, frame, obj, points, labels, clear_old_points=clear, box=box
        )
        steps.append(
            {
                "action": "prompt",
                "frame": frame,
                "object": obj,
                "points": points or [],
                "labels": labels or [],
                "box": box,
                "clear_old_points": clear,
                "calls": [first, len(calls)],
                "results": [result(*out)],
            }
        )

    def propagate(start=None, reverse=False):
        first = len(calls)
        results = [result(*out) for out in tracker.propagate_in_video(state, start, reverse=reverse)]
        steps.append(
            {
                "action": "propagate",
                "start": start,
                "reverse": reverse,
                "calls": [first, len(calls)],
                "results": results,
            }
        )

    prompt(0, 1, points=[[3.0, 4.0]], labels=[1])
    prompt(0, 2, points=[[8.0, 5.0]], labels=[0], box=[5.0, 1.0, 11.0, 7.0])
    propagate()
    prompt(3, 1, points=[[6.0, 6.0]], labels=[1])
    prompt(3, 1, points=[[2.0, 8.0]], labels=[0], clear=False)
    propagate()
    prompt(6, 1, points=[[9.0, 2.0]], labels=[1])
    prompt(6, 2, points=[[1.0, 1.0], [10.0, 9.0]], labels=[1, 1])
    propagate(7, reverse=True)

    def tensors(values):
        return {k: {"shape": list(v.shape), "values": numbers(v)} for k, v in values.items() if k != "image"}

    images = [np.asarray(tracker_image(tracker, frame)) for frame in frames]

    def frame_of(image) -> int:
        return next(i for i, candidate in enumerate(images) if np.array_equal(candidate, image))

    outputs = {
        str(obj_id): [
            {"frame": f, "object_score": round(o.object_score, 6), "mask_token": o.mask_token}
            for f in range(TRACK_FRAMES)
            if (o := obj.output_at(f)) is not None
        ]
        for obj_id, obj in state.objects.items()
    }
    return {
        "config": {
            "num_maskmem": config.num_maskmem,
            "recent_frames": config.recent_frames,
            "cond_slots": config.cond_slots,
            "max_obj_ptrs": config.max_obj_ptrs,
            "fill_hole_area": config.fill_hole_area,
            "image_size": config.image_size,
            "memory_slots": s,
            "pointer_slots": p,
        },
        "width": width,
        "height": height,
        "frames": TRACK_FRAMES,
        "calls": [
            {"part": part, "inputs": tensors(f), "outputs": tensors(o)}
            | ({"frame": frame_of(f["image"])} if part == "encoder" else {})
            for part, f, o in calls
        ],
        "steps": steps,
        "final_outputs": outputs,
    }


def fixtures() -> Dict[str, str]:
    """file name -> exact contents."""
    out = {
        "contract_geometry.json": dumps(contract_geometry()),
        "prompt_tokens.json": dumps(prompt_tokens()),
        "mask_postprocessing.json": dumps(mask_postprocessing()),
        "latency_stats.json": dumps(latency_stats()),
        "breadcrumb.json": dumps(breadcrumb()),
        "result.json": dumps(result_file()),
        "everything.json": dumps(everything()),
        "panoptic_fusion.json": dumps(panoptic_fusion()),
        "video_tracks.json": dumps(video_tracks()),
        "memory_tracker.json": dumps(memory_tracker()),
    }
    out.update(devicectl_and_jetsam())
    return out


if __name__ == "__main__":
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for name, text in fixtures().items():
        (FIXTURES / name).write_text(text)
        print(f"wrote {FIXTURES / name}", file=sys.stderr)
