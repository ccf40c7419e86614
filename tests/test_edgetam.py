"""EdgeTAM against the official code (../shared/parity/edgetam.*: SAM2ImagePredictor on frame 0 and the
official video predictor over the 8-frame clip), the tracker's input checks, and the tracker on ONNX."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import require_parity_dir, write_fixture_checkpoint

# SAM2-README.md: float32 tolerances (>= 5x the thread-count noise, well below a 1% weight perturbation)
ENCODER_ATOL = 1e-4
TRACK_ATOL = 1e-4
VIDEO_MEAN_ATOL = 1e-4
VIDEO_PIXEL_ATOL, VIDEO_PIXEL_SHARE = 2e-3, 0.999
MASK_FLIP_SHARE = 1e-4


def npz(kind: str):
    return np.load(require_parity_dir() / f"edgetam.{kind}.npz")


@pytest.fixture(scope="module")
def video():
    return npz("video")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, video):
    return write_fixture_checkpoint(
        "edgetam", tmp_path_factory.mktemp("edgetam") / "edgetam.pt", str(video["salt"])
    )


@pytest.fixture(scope="module")
def model(checkpoint):
    import samexport

    return samexport.build_model("edgetam", checkpoint=checkpoint)


def sample(tensor, z, key) -> float:
    return float(np.abs(np.asarray(tensor).reshape(-1)[z[f"{key}_sample_idx"]] - z[f"{key}_sample"]).max())


def assert_video_logits(ours: np.ndarray, official: np.ndarray, what: str) -> None:
    """The README's video floor per frame: mean abs diff, the share of pixels within 2e-3, mask flips."""
    for i, (a, b) in enumerate(zip(ours, official)):
        diff = np.abs(a - b)
        assert diff.mean() <= VIDEO_MEAN_ATOL, f"{what} frame {i}: mean diff {diff.mean():.3g}"
        assert np.mean(diff <= VIDEO_PIXEL_ATOL) >= VIDEO_PIXEL_SHARE, (
            f"{what} frame {i}: max diff {diff.max():.3g}"
        )
        assert np.mean((a > 0) != (b > 0)) <= MASK_FLIP_SHARE, f"{what} frame {i}: mask pixels flipped"


def test_checkpoint_layout_is_the_official_one(model):
    require_parity_dir()
    from fill import load_manifest

    official = [
        (k, tuple(s)) for k, s, _ in load_manifest(require_parity_dir() / "edgetam.manifest.json")["keys"]
    ]
    ours = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert sorted(ours) == sorted(official)


def test_reparameterized_trunk_computes_the_same(model):
    import samexport

    fused = samexport.reparameterize_model(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for a, b in zip(model.image_encoder(x), fused.image_encoder(x)):
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_image_predictor_parity(model):
    """SAM2ImagePredictor on frame 0: input, features, every case's decoder outputs and final logits."""
    z = npz("image")
    from samexport.families.edgetam.tracker import TrackerConfig, choose_token
    from samexport.modeling.transforms import sam2_postprocess_masks

    with torch.no_grad():
        x = model.preprocess_image(z["image"])
        assert sample(x, z, "input") <= 1e-6
        vision, s0, s1 = model.encode_image(x)
        embed = vision + model.no_mem_embed.reshape(1, -1, 1, 1)
        assert sample(embed, z, "image_embed") <= ENCODER_ATOL
        assert sample(s0, z, "high_res_feats0") <= ENCODER_ATOL
        assert sample(s1, z, "high_res_feats1") <= ENCODER_ATOL
        cases = json.loads(str(z["cases_json"]))
        for i, case in enumerate(cases):
            coords = torch.from_numpy(z[f"case_{i}_coords_model"])
            labels = torch.from_numpy(z[f"case_{i}_labels_model"]).float()
            coords = torch.cat([coords, torch.zeros(1, 1, 2)], 1)
            labels = torch.cat([labels, -torch.ones(1, 1)], 1)
            masks, iou, _, score = model.decode(embed, s0, s1, coords, labels)
            np.testing.assert_allclose(masks, z[f"case_{i}_decoder_masks_raw"], atol=ENCODER_ATOL)
            np.testing.assert_allclose(iou, z[f"case_{i}_decoder_iou_raw"], atol=ENCODER_ATOL)
            np.testing.assert_allclose(score, z[f"case_{i}_decoder_object_score_logits"], atol=ENCODER_ATOL)
            if case["multimask_output"]:
                chosen = masks[0, 1:].numpy()
            else:
                token, _ = choose_token(masks[0].numpy(), iou[0].numpy(), False, TrackerConfig())
                chosen = masks[0, token : token + 1].numpy()
            np.testing.assert_allclose(chosen, z[f"case_{i}_low_res_masks"], atol=ENCODER_ATOL)
            logits = sam2_postprocess_masks(torch.from_numpy(chosen)[None], z["image"].shape[:2])[0]
            np.testing.assert_allclose(logits, z[f"case_{i}_logits"], atol=1e-3)


@pytest.mark.slow
def test_video_predictor_parity(checkpoint, video):
    """Both objects in one state through the official scenario (clicks and a box on frame 0, propagation, a
    correction on frame 3, propagation, reverse from frame 3): every yielded frame, the intermediates."""
    import samexport

    predictor = samexport.build_video_predictor("edgetam", checkpoint=checkpoint)
    prompts = json.loads(str(video["prompts_json"]))
    state = predictor.init_state(frames=list(video["frames"]))
    click, box, correction = prompts["obj1_click_f0"], prompts["obj2_box_f0"], prompts["obj1_corr_f3"]
    _, ids, masks = predictor.add_new_points_or_box(
        state, 0, 1, points=click["points"], labels=click["labels"]
    )
    assert ids == [1]
    assert_video_logits(masks[0], video["add0_video_logits"], "add0")
    _, ids, masks = predictor.add_new_points_or_box(state, 0, 2, box=box["box"])
    assert ids == [1, 2]
    assert_video_logits(masks[1], video["add1_video_logits"], "add1")
    frame0 = state.objects[1].temp_cond[0]
    np.testing.assert_allclose(frame0.obj_ptr, video["add0_obj_ptr"][0], atol=2e-4)
    fwd = list(predictor.propagate_in_video(state))
    assert [f for f, _, _ in fwd] == list(video["fwd_frames"])
    assert_video_logits(np.stack([m[:, 0] for _, _, m in fwd]), video["fwd_video_logits"], "fwd")
    assert sample(state.objects[1].cond[0].memory, video, "mem_f0_obj1_maskmem_features") <= 1e-2
    for obj in (1, 2):
        outputs = state.objects[obj]
        scores = [outputs.output_at(f).object_score for f in range(8)]
        np.testing.assert_allclose(scores, video["fwd_object_score_logits"][:, obj - 1], atol=1e-4)
        pointers = [outputs.output_at(f).obj_ptr for f in range(8)]
        np.testing.assert_allclose(pointers, video["fwd_obj_ptr"][:, obj - 1], atol=2e-4)
    _, _, masks = predictor.add_new_points_or_box(
        state, 3, 1, points=correction["points"], labels=correction["labels"]
    )
    assert_video_logits(masks[0], video["add2_video_logits"], "add2")
    fwd2 = np.stack([m[:, 0] for _, _, m in predictor.propagate_in_video(state)])
    assert_video_logits(fwd2, video["fwd2_video_logits"], "fwd2")
    rev = sorted(predictor.propagate_in_video(state, start_frame_idx=3, reverse=True), key=lambda r: r[0])
    assert [f for f, _, _ in rev] == [0, 1, 2, 3]
    assert_video_logits(np.stack([m[:, 0] for _, _, m in rev]), video["rev_video_logits"], "rev")


def test_tracker_refuses_bad_prompts_in_one_line(video):
    import samexport
    from samexport.errors import InputError, UsageError

    predictor = samexport.build_video_predictor("edgetam")
    frames = list(video["frames"][:2])
    state = predictor.init_state(frames=frames)
    with pytest.raises(InputError, match="frame 5 is not in the clip"):
        predictor.add_new_points_or_box(state, 5, 1, points=[[10, 10]], labels=[1])
    with pytest.raises(InputError, match="points and labels"):
        predictor.add_new_points_or_box(state, 0, 1, points=[[10, 10]])
    with pytest.raises(InputError, match="give points"):
        predictor.add_new_points_or_box(state, 0, 1)
    with pytest.raises(UsageError, match="no objects to track"):
        next(predictor.propagate_in_video(state))
    with pytest.raises(InputError, match="differ in size"):
        predictor.init_state(frames=[frames[0], frames[0][:100]])
    with pytest.raises(UsageError, match="no memory-bank tracker"):
        samexport.build_video_predictor("repvit")


@pytest.mark.slow
def test_tracker_on_the_onnx_and_litert_exports_equals_the_official_tracker(
    tmp_path, capsys, checkpoint, video
):
    """convert --encoder edgetam --target onnx,litert (float32) validates every part (teacher-forced on the
    validation clip); the tracker over each export follows the official predictor frame by frame on the
    fixture clip (mask IoU >= 0.99, the same object-score signs). Prompts of 1 and 2 points (2 and 3 tokens)
    are all the clip's prompts need."""
    import samexport
    from samexport.amg import decode_rle
    from samexport.export.convert import convert
    from samexport.export.options import ConvertOptions

    manifest = convert(
        ConvertOptions(
            encoder="edgetam",
            target="onnx,litert",
            output_dir=tmp_path,
            checkpoint=checkpoint,
            precision="fp32",
            points=(1, 2),
        ),
        quiet=True,
    )
    for target in ("onnx", "litert"):
        assert set(manifest["validation"][target]) >= {
            "encoder",
            "prompt_decoder",
            "track_decoder",
            "memory_attention",
            "memory_encoder",
        }
        assert manifest["validation"][target]["passed"]
    # LiteRT's GPU delegate takes tensors of rank <= 4 only
    for part in ("encoder", "prompt_decoder", "track_decoder", "memory_attention", "memory_encoder"):
        assert manifest["litert"][part]["structure"]["max_rank"] <= 4, part
    path = next(tmp_path.glob("*.export.json"))
    prompts = json.loads(str(video["prompts_json"]))
    click, box = prompts["obj1_click_f0"], prompts["obj2_box_f0"]
    official = video["fwd_video_logits"]
    for backend in ("onnx", "litert"):
        predictor = samexport.build_video_predictor("edgetam", backend=backend, manifest=path)
        state = predictor.init_state(frames=list(video["frames"]))
        predictor.add_new_points_or_box(state, 0, 1, points=click["points"], labels=click["labels"])
        predictor.add_new_points_or_box(state, 0, 2, box=box["box"])
        fwd = np.stack([m[:, 0] for _, _, m in predictor.propagate_in_video(state)])
        iou = ((fwd > 0) & (official > 0)).sum((2, 3)) / ((fwd > 0) | (official > 0)).sum((2, 3))
        assert iou.min() >= 0.99, backend
        for obj in (1, 2):
            outputs = state.objects[obj]
            scores = np.array([outputs.output_at(f).object_score for f in range(8)])
            assert np.array_equal(scores > 0, video["fwd_object_score_logits"][:, obj - 1] > 0), backend
        assert_video_logits(fwd, official, f"{backend} fwd")
    # segment --video on the LiteRT export in --models-dir (found by its checkpoint and precision)
    from helpers import invoke

    write_frames(tmp_path / "clip", video["frames"][:3])
    x, y = click["points"][0]
    result = invoke(
        capsys, "segment", str(tmp_path / "clip"), "--video", "--encoder", "edgetam", "--backend", "litert",
        "--models-dir", str(tmp_path), "--checkpoint", str(checkpoint), "--point", f"{x},{y}",
        "--output", str(tmp_path / "tracked.mp4"), "--json", str(tmp_path / "tracked.json"), "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = json.loads((tmp_path / "tracked.json").read_text())
    assert document["backend"] == "litert" and len(document["frames_objects"]) == 3
    for f, (record,) in enumerate(document["frames_objects"]):
        mask = decode_rle(record["segmentation"])
        union = (mask | (official[f, 0] > 0)).sum()
        assert (mask & (official[f, 0] > 0)).sum() / union >= 0.99, f


def write_frames(folder, frames) -> None:
    from PIL import Image

    folder.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i}.png")


@pytest.mark.slow
def test_segment_video_tracks_prompted_objects_to_a_clip_and_json(tmp_path, checkpoint, video):
    """segment --video --encoder edgetam on a folder of the fixture clip's first 4 frames, prompts from a
    file on two frames: the two objects prompted on frame 0 follow the official predictor (the first frames'
    results do not depend on the clip's length), the one prompted on frame 2 is there on frame 2; the
    annotated clip has every frame."""
    import cv2

    from helpers import run_cli
    from samexport.amg import decode_rle

    frames = video["frames"][:4]
    write_frames(tmp_path / "clip", frames)
    given = json.loads(str(video["prompts_json"]))
    click, box = given["obj1_click_f0"], given["obj2_box_f0"]
    prompts = [
        {
            "frame": 0,
            "object": 1,
            "points": [[*p, label] for p, label in zip(click["points"], click["labels"])],
        },
        {"frame": 0, "object": 2, "box": box["box"]},
        {"frame": 2, "object": 3, "points": [[160.0, 200.0, 1]]},
    ]
    (tmp_path / "prompts.json").write_text(json.dumps(prompts))
    out, doc = tmp_path / "tracked.mp4", tmp_path / "tracked.json"
    result = run_cli(
        "segment", str(tmp_path / "clip"), "--video", "--encoder", "edgetam", "--checkpoint", str(checkpoint),
        "--prompts", str(tmp_path / "prompts.json"), "--output", str(out), "--json", str(doc),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = json.loads(doc.read_text())
    assert document["format"] == "samexport.track/1" and document["objects"] == [1, 2, 3]
    assert document["frames"] == 4 and document["size_hw"] == [240, 320]
    official = video["fwd_video_logits"][:4] > 0
    scores = video["fwd_object_score_logits"][:4]
    for f, objects in enumerate(document["frames_objects"]):
        assert [o["id"] for o in objects] == [1, 2, 3]
        for obj in (1, 2):
            record = objects[obj - 1]
            mask = decode_rle(record["segmentation"])
            assert mask.sum() == record["area"]
            union = (mask | official[f, obj - 1]).sum()
            assert union == 0 or (mask & official[f, obj - 1]).sum() / union >= 0.99, (f, obj)
            assert record["present"] == bool(scores[f, obj - 1] > 0), (f, obj)
    assert document["frames_objects"][2][2]["present"]
    capture = cv2.VideoCapture(str(out))
    count = 0
    while capture.read()[0]:
        count += 1
    assert count == 4


@pytest.mark.parametrize(
    "prompts, flags, message",
    [
        (
            [{"frame": 9, "object": 1, "points": [[5, 5, 1]]}],
            (),
            r"frame 9 is past the clip's end: clip has frames 0\.\.1",
        ),
        (
            [{"frame": 0, "object": 0, "points": [[5, 5, 1]]}],
            (),
            r'"object" must be an object id \(1, 2, \.\.\.\), got 0',
        ),
        ([{"frame": 0, "object": "a", "box": [1, 1, 9, 9]}], (), r"must be an object id"),
        (
            [
                {"frame": 0, "object": 1, "points": [[5, 5, 1]]},
                {"frame": 0, "object": 1, "box": [1, 1, 9, 9]},
            ],
            (),
            r"entry 1 prompts object 1 on frame 0 again \(entry 0 did\)",
        ),
        ([{"frame": 0, "object": 1, "points": []}], (), r"entry 0 \(object 1 on frame 0\) is empty"),
        (
            [{"frame": 0, "object": 1, "points": [[500, 5, 1]]}],
            (),
            r"point 500,5 lies outside the 32x24 frames",
        ),
        ([{"frame": 0, "object": 1, "points": [[5, 5, 2]]}], (), r"label 1 or 0"),
        ([], (), r"must hold a non-empty list"),
        (None, (), r"tracks the objects you prompt: give --point/--box"),
        (None, ("--point", "5,5", "--score-threshold", "0.3"), r"drop --score-threshold"),
        ([{"frame": 0, "object": 1, "points": [[5, 5, 1]]}], ("--point", "5,5"), r"not both"),
    ],
)
def test_segment_video_with_edgetam_refuses_bad_prompts_in_one_line(
    tmp_path, capsys, prompts, flags, message
):
    """Prompts are checked against the clip before the model is built: one line, exit 2, nothing written."""
    import re

    from helpers import invoke

    write_frames(tmp_path / "clip", [np.zeros((24, 32, 3), np.uint8)] * 2)
    args = [
        "segment",
        str(tmp_path / "clip"),
        "--video",
        "--encoder",
        "edgetam",
        "--output",
        str(tmp_path / "o.mp4"),
    ]
    if prompts is not None:
        (tmp_path / "p.json").write_text(json.dumps(prompts))
        args += ["--prompts", str(tmp_path / "p.json")]
    result = invoke(capsys, *args, *flags)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), lines
    assert not (tmp_path / "o.mp4").exists()


def test_a_folder_of_frames_of_mixed_sizes_is_refused_before_any_work(tmp_path, capsys):
    from PIL import Image

    from helpers import invoke

    (tmp_path / "clip").mkdir()
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(tmp_path / "clip" / "0.jpg")
    Image.fromarray(np.zeros((20, 32, 3), np.uint8)).save(tmp_path / "clip" / "1.jpg")
    result = invoke(
        capsys, "segment", str(tmp_path / "clip"), "--video", "--encoder", "edgetam", "--point", "5,5",
        "--output", str(tmp_path / "o.mp4"),
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'clip' / '1.jpg'} is 32x20, 0.jpg 32x24; every frame must have one size"
    ]
