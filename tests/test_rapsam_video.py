"""RAP-SAM video instance segmentation equals the official near-online inference (`Mask2formerVideoMinVIS`,
`eval_rap_sam_yt19.py`) on the fixture clips of tests/fixtures/rapsam_video (README there).

Floors: the panoptic ones (class and mask logits within 1e-3 x max |ref|; the hard-mask pooling moves
whole feature vectors when a logit crosses 0); the same tube split and matching order; per frame the
same (query, class) instances, scores within 5e-4, each mask within 0.05% of the pixels; ids one to one with
the official ids and constant across frames.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import samexport
from helpers import rel_err, require_parity_dir, write_moving_clip
from samexport.amg import decode_rle
from samexport.errors import InputError
from samexport.families.rapsam import video
from samexport.families.rapsam.pipelines import VideoPipeline
from samexport.modeling.rapsam import VIDEO_RESIZE_SCALE, official_input

FIXTURE = Path(__file__).parent / "fixtures" / "rapsam_video" / "rap_sam_r50.video.npz"
CLIPS = ("clip7", "clip3", "clip16")


@pytest.fixture(scope="module")
def z():
    return np.load(FIXTURE)


@pytest.fixture(scope="module")
def model():
    require_parity_dir()
    with pytest.warns(samexport.RandomWeightsWarning):
        return samexport.build_model("rapsam")


def clip_frames(z, clip: str):
    """The fixture rule: frame t is the parity scene rolled by t x (dy, dx)."""
    import cv2

    spec = json.loads(str(z["clips_json"]))[clip]
    scene = cv2.cvtColor(cv2.imread(str(require_parity_dir() / "scene.png")), cv2.COLOR_BGR2RGB)
    dy, dx = spec["shift_yx"]
    return [np.roll(scene, (dy * t, dx * t), axis=(0, 1)) for t in range(spec["frames"])]


@pytest.fixture(scope="module")
def pipeline():
    """The video pipeline over PyTorch runners (the official model's own modules)."""
    from samexport.zoo import torch_session

    require_parity_dir()
    session, notes = torch_session("rapsam")
    assert notes  # the fixture fill
    return VideoPipeline(session)


@pytest.fixture(scope="module")
def results(pipeline, z):
    return {clip: pipeline(clip_frames(z, clip)) for clip in CLIPS}


def test_the_video_classifier_is_the_fixture_fill(model, z):
    head = model.panoptic_head.video_classifier
    assert tuple(head.shape) == (768, 41, 17) and not head[:, 40].any()
    np.testing.assert_array_equal(
        head[:, :40].permute(1, 2, 0).reshape(-1)[:16].numpy(), z["ov_classifier_sample"]
    )


@pytest.mark.parametrize("frames", [1, 2, 3, 5, 7, 15, 16, 17, 23, 40])
def test_tube_split_is_the_official_rule(frames):
    """The official `video_split` spreads the remainder over the last tubes."""
    expected = {
        1: [1],
        2: [2],
        3: [3],
        5: [3, 5],
        7: [3, 5, 7],
        15: [3, 6, 9, 12, 15],
        16: [5, 10, 15, 16],
        17: [5, 9, 13, 17],
        23: [5, 10, 15, 19, 23],
        40: [5, 10, 15, 20, 25, 30, 35, 40],
    }
    assert video.tube_ends(frames) == expected[frames]


def test_tube_lengths_cover_every_split():
    assert video.tube_lengths() == (5, 4, 3, 2, 1)


def test_frames_and_mask_features_equal_the_official_ones(model, z):
    frames = clip_frames(z, "clip7")
    x, resized = official_input(frames[0], VIDEO_RESIZE_SCALE)
    assert resized == tuple(z["clip7_resized_size"]) and tuple(x.shape[-2:]) == tuple(z["clip7_input_size"])
    np.testing.assert_array_equal(
        x.reshape(-1).numpy()[z["clip7_input_frame0_sample_idx"]], z["clip7_input_frame0_sample"]
    )
    with torch.no_grad():
        features = torch.cat([model.image_encoder(official_input(f, VIDEO_RESIZE_SCALE)[0]) for f in frames])
    assert tuple(features.shape) == tuple(z["clip7_mask_features_shape"])
    assert (
        rel_err(features.reshape(-1)[z["clip7_mask_features_sample_idx"]], z["clip7_mask_features_sample"])
        < 1e-4
    )


@pytest.mark.parametrize("clip", CLIPS)
def test_tubes_and_matching_equal_the_official_ones(results, z, clip):
    result = results[clip]
    assert [t["end"] for t in result.tubes] == z[f"{clip}_tube_ends"].tolist()
    for k, tube in enumerate(result.tubes):
        assert rel_err(tube["class_logits"], z[f"{clip}_tube{k}_class_logits"][0]) < 1e-3, k
        if k:
            np.testing.assert_array_equal(tube["order"], z[f"{clip}_match{k}"])
    assert rel_err(result.class_logits, z[f"{clip}_averaged_class_logits"]) < 1e-3


def test_tube_mask_logits_equal_the_official_ones(model, z):
    frames = clip_frames(z, "clip7")
    with torch.no_grad():
        features = model.image_encoder(torch.cat([official_input(f, VIDEO_RESIZE_SCALE)[0] for f in frames]))
    start = 0
    for k, end in enumerate(z["clip7_tube_ends"].tolist()):
        classes, masks, queries = model.tube(features[start:end])
        prefix = f"clip7_tube{k}_"
        assert tuple(masks.shape) == tuple(z[prefix + "mask_logits_shape"])
        assert (
            rel_err(masks.reshape(-1)[z[prefix + "mask_logits_sample_idx"]], z[prefix + "mask_logits_sample"])
            < 1e-3
        )
        assert rel_err(queries[0], z[prefix + "query_embeddings"][0]) < 1e-3
        own = z["clip7_whole_queries"] if k == 0 else z[f"clip7_match{k}"][z["clip7_whole_queries"]]
        assert rel_err(masks[0, own], z[prefix + "whole_mask_logits"]) < 1e-3
        start = end


@pytest.mark.parametrize("clip", CLIPS)
def test_frame_instances_equal_the_official_ones(results, z, clip):
    result = results[clip]
    official_to_ours = {}
    for t, instances in enumerate(result.frames):
        f = f"{clip}_frame{t}_"
        ours = {(i["query"], i["label"]): i for i in instances}
        official = list(zip(z[f + "query"].tolist(), z[f + "labels"].tolist()))
        assert set(ours) == set(official), t
        matched = [ours[pair] for pair in official]
        np.testing.assert_allclose([i["score"] for i in matched], z[f + "scores"], atol=5e-4)
        np.testing.assert_allclose([i["box"] for i in matched], z[f + "bboxes"], atol=2.0)
        pixels = np.prod(result.image_size)
        assert np.abs(np.array([i["area"] for i in matched]) - z[f + "mask_areas"]).max() <= 5e-4 * pixels
        for index, packed in zip(z[f + "masks_index"], z[f + "masks_packed"]):
            official_mask = np.unpackbits(packed, axis=-1)[:, : result.image_size[1]].astype(bool)
            assert (decode_rle(matched[index]["rle"]) != official_mask).mean() <= 5e-4
        for official_id, instance in zip(z[f + "instance_ids"].tolist(), matched):
            assert official_to_ours.setdefault(official_id, instance["id"]) == instance["id"], (
                t,
                official_id,
            )
    assert sorted(official_to_ours.values()) == list(range(1, len(official_to_ours) + 1))


def test_ids_follow_the_class_score(results):
    instances = results["clip7"].frames[0]
    scores = [i["class_score"] for i in instances]
    assert [i["id"] for i in instances] == list(range(1, 101)) and scores == sorted(scores, reverse=True)
    tracks = results["clip7"].tracks()
    assert len(tracks) == 100 and all(len(t["segmentations"]) == 7 for t in tracks)


def test_a_clip_with_frames_of_two_sizes_is_refused(pipeline, z):
    frames = clip_frames(z, "clip3")
    frames[2] = frames[2][:240]
    with pytest.raises(InputError, match="every frame must be 640x480"):
        pipeline(frames)


def test_without_the_video_classifier_video_is_refused(tmp_path):
    from helpers import write_rapsam_fixture_files

    checkpoint, coco = write_rapsam_fixture_files(tmp_path)
    model = samexport.build_model("rapsam", checkpoint=checkpoint, classifier=coco)
    with pytest.raises(InputError, match="YouTube-VIS 2019 classifier"):
        model.tube(torch.zeros(1, 256, 8, 8))
    from samexport.zoo import torch_session

    session, _ = torch_session("rapsam", checkpoint=checkpoint, classifier=coco)
    with pytest.raises(InputError, match="YouTube-VIS 2019 classifier"):  # before any frame is encoded
        VideoPipeline(session)


def test_a_youtube_vis_classifier_file_enables_video_and_not_panoptic(tmp_path):
    from helpers import write_rapsam_fixture_files
    from samexport.checkpoint import random_fill
    from samexport.families.rapsam.family import fill_classifier

    checkpoint, _ = write_rapsam_fixture_files(tmp_path)
    torch.save(fill_classifier(random_fill, video=True), tmp_path / "ytvis.pth")
    model = samexport.build_model("rapsam", checkpoint=checkpoint, classifier=tmp_path / "ytvis.pth")
    assert model.has_video_classifier and not model.has_classifier
    features = torch.zeros(2, 256, 8, 8)
    classes, masks, queries = model.tube(features)
    assert (tuple(classes.shape), tuple(masks.shape), tuple(queries.shape)) == (
        (1, 100, 41),
        (1, 100, 2, 8, 8),
        (1, 100, 256),
    )
    with pytest.raises(InputError, match="panoptic segmentation needs"):
        model.panoptic(features[:1])


def test_segment_video_writes_an_annotated_clip_and_per_frame_instances(tmp_path):
    import cv2

    from helpers import run_cli

    clip = write_moving_clip(tmp_path / "clip.mp4", 4)
    out, doc = tmp_path / "annotated.mp4", tmp_path / "instances.json"
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    abandoned = tmp_path / f".samexport-video-{gone.stdout.strip()}-x"  # what a killed run left
    abandoned.mkdir()
    (abandoned / "annotated.mp4").write_bytes(b"partial")
    args = (
        "segment",
        str(clip),
        "--encoder",
        "rapsam_r50",
        "--video",
        "--output",
        str(out),
        "--json",
        str(doc),
    )
    result = run_cli(*args, "--score-threshold", "0")
    assert result.returncode == 0, result.stderr
    document = json.loads(doc.read_text())
    assert document["frames"] == 4 and document["size_hw"] == [96, 128]
    assert [(t["start"], t["end"]) for t in document["tubes"]] == [(0, 3), (3, 4)]
    assert all(len(frame) == 100 for frame in document["instances"])
    for frame in document["instances"]:  # an id names the same (class, track) in every frame
        assert [i["id"] for i in frame] == list(range(1, 101))
        assert [i["category"] for i in frame] == [i["category"] for i in document["instances"][0]]
        for i in frame[:3]:
            assert decode_rle(i["segmentation"]).sum() == i["area"]
    capture = cv2.VideoCapture(str(out))
    shown = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        shown.append(frame)
    assert len(shown) == 4 and shown[0].shape == (96, 128, 3)
    assert not list(tmp_path.glob(".samexport-video-*"))  # its own work folder and the abandoned one
    again = run_cli(*args)
    assert again.returncode == 2 and "exists" in again.stderr and len(again.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "make, encoder, output, flags, message",
    [
        (
            lambda p: p.write_bytes(b"not a video"),
            "rapsam_r50",
            "out.mp4",
            (),
            "is not a video OpenCV can read",
        ),
        (
            lambda p: write_moving_clip(p, 0),
            "rapsam_r50",
            "out.mp4",
            (),
            "not a video OpenCV can read|has no frames",
        ),
        (lambda p: write_moving_clip(p, 2), "tinyvit", "out.mp4", (), "segments images only"),
        (lambda p: write_moving_clip(p, 2), "rapsam_r50", "out.png", (), "must be an .mp4 file"),
        (lambda p: write_moving_clip(p, 2), "rapsam_r50", "out.mp4", ("--point", "3,4"), "drop --point"),
        (
            lambda p: write_moving_clip(p, 2),
            "rapsam_r50",
            "out.mp4",
            ("--backend", "tflite"),
            "unknown --backend",
        ),
        (
            lambda p: p.write_bytes((require_parity_dir() / "scene.png").read_bytes()),
            "rapsam_r50",
            "out.mp4",
            (),
            "is a PNG image, not a video; segment it without --video",
        ),
        (
            lambda p: write_moving_clip(p, 2),
            "rapsam_r50",
            "out.mp4",
            ("--memory-budget", "0.5"),
            r"128x96, 2 frames\) needs about 1.1 GB of memory, over the 0.5 GB budget",
        ),
    ],
)
def test_segment_video_refuses_bad_input_in_one_line(tmp_path, make, encoder, output, flags, message):
    import re

    from helpers import run_cli

    clip = tmp_path / "clip.mp4"
    make(clip)
    result = run_cli(
        "segment", str(clip), "--encoder", encoder, "--video", "--output", str(tmp_path / output), *flags
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), lines
    assert not (tmp_path / output).exists()


def test_the_memory_estimate_covers_the_measured_runs():
    """Peak RSS measured here: 4K x 5 frames 11.65 GB, 1080p x 10 frames 3.7 GB (issue 37's probes)."""
    from samexport.families.rapsam.video_segment import memory_estimate

    for (h, w, frames), measured in (((2160, 3840, 5), 11.65e9), ((1080, 1920, 10), 3.7e9)):
        assert measured <= memory_estimate(h, w, frames) <= 1.2 * measured


def test_score_threshold_needs_video(tmp_path):
    from helpers import run_cli

    result = run_cli(
        "segment",
        "x.png",
        "--encoder",
        "rapsam_r50",
        "--everything",
        "--output",
        str(tmp_path / "o.png"),
        "--score-threshold",
        "0.3",
    )
    assert result.returncode == 2 and "--score-threshold is a --video option" in result.stderr


def test_matching_undoes_a_shuffle_of_the_queries():
    rng = np.random.default_rng(0)
    objects = rng.standard_normal((100, 256)).astype(np.float32)
    shuffle = rng.permutation(100)
    current = objects[shuffle] + 0.01 * rng.standard_normal((100, 256)).astype(np.float32)
    order = video.match_queries(objects, current)
    np.testing.assert_array_equal(shuffle[order], np.arange(100))
    linker = video.TubeLinker()
    linker.add(np.zeros((100, 41), np.float32), objects)
    np.testing.assert_array_equal(linker.add(np.ones((100, 41), np.float32), current), order)
    np.testing.assert_array_equal(linker.class_logits(), np.full((100, 41), 0.5, np.float32))


def test_a_clip_without_frames_or_count_is_refused(pipeline):
    with pytest.raises(InputError, match="at least one frame"):
        pipeline([])
    with pytest.raises(InputError, match="give its number of frames as count="):
        pipeline(iter([np.zeros((8, 8, 3), np.uint8)]))


def test_the_tube_heads_float32_floor_allows_for_sums_over_frames():
    from samexport.export.quality import FP32_MAX_REL, output_floor

    assert output_floor("pooled_over_frames", "fp32", "none", "litert") == {"max_rel": 1e-3}
    assert output_floor("default", "fp32", "none", "litert") == {"max_rel": FP32_MAX_REL}
    assert output_floor("pooled_over_frames", "fp16", "none", "litert") == {"min_psnr_db": 35.0}
    assert output_floor("pooled_over_frames", "fp32", "none", "coreai") == {"min_psnr_db": 60.0}
