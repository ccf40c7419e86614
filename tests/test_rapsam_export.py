"""RAP-SAM exports: `samexport convert --encoder rapsam_r50` writes encoder, prompt decoder, panoptic
head and tube head (video) for every target and checks each against PyTorch; float16 keeps the hard-mask
poolings in float32. Small input sizes keep these quick; benchmarks/rapsam.py measures the default
800x1088."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import assert_rapsam_pipelines_on_the_export_equal_pytorchs, run_cli, write_moving_clip
from samexport.errors import UsageError
from samexport.export import coreml_export
from samexport.export.coreml_precision import float32_region
from samexport.export.options import PRECISIONS
from samexport.families.rapsam.parts import PanopticHeadForExport, PromptDecoderForExport
from samexport.mileval import evaluate, load_program
from samexport.mileval.program import dtype_name
from samexport.reparam import reparameterize_model

SMALL = (256, 352)


@pytest.fixture(scope="module")
def fused():
    from helpers import build_quiet

    return reparameterize_model(build_quiet("rapsam_r50"))


def float32_ops(path):
    """The saved program and its non-constant ops that compute in float32."""
    program = load_program(path)
    ops = [op for op in program.operations if op.op_type not in ("const", "cast")]
    return program, [op for op in ops if any(dtype_name(v) == "fp32" for v in op.outputs)]


def test_fp16_keeps_exactly_the_hard_mask_poolings_in_float32(tmp_path, fused):
    """Every stage's pooling matmul and the kernel-update ops it feeds stay float32; nothing after their
    layer_norms does (mask products, attention, FFN are float16)."""
    features = torch.randn(1, 256, SMALL[0] // 4, SMALL[1] // 4)
    for module, example, inputs, outputs, pools in (
        (
            PromptDecoderForExport(fused),
            (features, torch.tensor([[[10.0, 10.0, 60.0, 40.0]]]), torch.tensor([256.0, 352.0])),
            ["maskFeatures", "prompts", "resizedSize"],
            ["maskLogits", "iouScores"],
            3,
        ),
        (PanopticHeadForExport(fused), (features,), ["maskFeatures"], ["classLogits", "maskLogits"], 4),
    ):
        traced = coreml_export.trace(module, example)
        types = [coreml_export.tensor_input(n, tuple(e.shape)) for n, e in zip(inputs, example)]
        mlmodel = coreml_export.convert(traced, types, outputs, "fp16", "iOS16", float32_region())
        path = tmp_path / f"{len(inputs)}.mlpackage"
        mlmodel.save(str(path))
        program, kept = float32_ops(path)
        kinds = {op.op_type for op in kept}
        assert sum(op.op_type == "matmul" for op in kept) == pools, kinds
        assert kinds <= {"matmul", "linear", "slice_by_index", "mul", "layer_norm"}, kinds
        assert sum(op.op_type == "layer_norm" for op in kept) == 3 * pools  # norm_in, input_norm_in, norm_out
        result = evaluate(program, {n: e.numpy() for n, e in zip(inputs, example)})
        assert not result.fp16_overflows and all(np.isfinite(v).all() for v in result.outputs.values())


def test_options_that_do_not_apply_are_refused(tmp_path):
    for args, message in (
        (["--encoder", "tinyvit", "--input-size", "800x1088"], "--input-size is for RAP-SAM"),
        (
            ["--encoder", "rapsam_r50", "--compress", "palettize8"],
            "--compress is not available for rapsam_r50",
        ),
        (["--encoder", "rapsam_r50", "--input-size", "800x1000"], "each a multiple of 32"),
        (["--encoder", "rapsam_r50", "--input-size", "big"], "takes HxW like 800x1088"),
    ):
        result = run_cli("convert", *args, "--output-dir", str(tmp_path / "out"))
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_rapsam_carries_no_sam_style_member():
    """Issue 32: the base is what every family shares; RAP-SAM overrides no SAM-only member to raise."""
    from samexport.families.registry import get_spec

    family = get_spec("rapsam").family
    sam_only = ("decoder_signature", "decoder_for_export", "click_prompts", "decoder_class", "mask_prompt")
    assert not [member for member in sam_only if hasattr(family, member)]


@pytest.mark.slow
def test_convert_writes_and_checks_every_part(tmp_path):
    """ONNX and Core ML (Core AI and LiteRT convert RAP-SAM in their own modules' real-family tests)."""
    out = tmp_path / "out"
    result = run_cli(
        "convert",
        "--encoder",
        "rapsam",
        "--target",
        "onnx,coreml",
        "--input-size",
        "x".join(map(str, SMALL)),
        "--points",
        "1,3",
        "--output-dir",
        str(out),
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "RAPSAMR50.export.json").read_text())
    names = {(t, p): v["path"] for t, parts in manifest["files"].items() for p, v in parts.items()}
    assert names == {
        (t, p): f"{folder}RAPSAMR50{p.capitalize()}{ext}"
        for t, folder, ext in (("onnx", "", ".onnx"), ("coreml", "", ".mlpackage"))
        for p in ("encoder", "decoder", "panoptic", "tube")
    }
    assert manifest["input_contract"]["model_input_size"] == list(SMALL)
    assert manifest["decoder_prompt"]["prompt_counts"] == [1, 3]
    for target in ("onnx", "coreml"):
        report = manifest["validation"][target]
        assert report["passed"]
        for part in ("encoder", "decoder", "panoptic", "tube"):
            assert report[part]["passed"] and not report[part]["failures"]
    onnx_worst = manifest["validation"]["onnx"]["decoder"]["worst"]["maskLogits"]
    assert onnx_worst["rel"] < 1e-4
    coreml = manifest["validation"]["coreml"]
    assert coreml["panoptic"]["worst"]["maskLogits"]["psnr_db"] >= 35
    # issue 26 item 1: both runtimes' heads are judged under their own hard masks (3 poolings in the
    # decoder, 4 in the panoptic head), read from onnxruntime and from the NumPy evaluator alike
    for target in ("onnx", "coreml"):
        for part, poolings in (("decoder", 3), ("panoptic", 4), ("tube", 4)):
            for case in manifest["validation"][target][part]["cases"].values():
                assert case["hard_masks"]["masks"] == poolings and case["hard_masks"]["passed"]
    # issue 32: the application loops over the export's runners equal the same loops over PyTorch's, and
    # `segment --video` runs the export, saying which backend ran and that its input is not the clip's own
    assert_rapsam_pipelines_on_the_export_equal_pytorchs(out / "RAPSAMR50.export.json", "onnx")
    clip, doc = write_moving_clip(tmp_path / "clip.mp4", 4, (48, 64)), tmp_path / "instances.json"
    video = run_cli(
        "segment", str(clip), "--encoder", "rapsam_r50", "--video", "--backend", "onnx", "--models-dir",
        str(out), "--output", str(tmp_path / "out.mp4"), "--json", str(doc),
    )  # fmt: skip
    assert video.returncode == 0, video.stderr
    document = json.loads(doc.read_text())
    assert document["backend"] == "onnx" and document["session"]["source"] == str(
        out / "RAPSAMR50.export.json"
    )
    assert len(document["instances"]) == 4
    assert "convert with --input-size 736x992 to match" in video.stderr + video.stdout
    assert "resample" in manifest["coreml"]["encoder"]["op_census"]
    import onnx

    graph = onnx.load(out / "RAPSAMR50Encoder.onnx").graph
    assert sum(n.op_type == "DeformConv" for n in graph.node) == 3
    from samexport.coreml_package import CoreMLPackage

    decoder = CoreMLPackage(out / "RAPSAMR50Decoder.mlpackage")
    prompts = {f["name"]: f for f in decoder.io["inputs"]}["prompts"]
    assert prompts["shape"] == [1, 1, 4] and {tuple(s) for s in prompts["enumerated_shapes"]} == {
        (1, 1, 4),
        (1, 3, 4),
    }
    tube = {f["name"]: f for f in CoreMLPackage(out / "RAPSAMR50Tube.mlpackage").io["inputs"]}[
        "frameFeatures"
    ]
    assert {tuple(s) for s in tube["enumerated_shapes"]} == {(t, 256, 64, 88) for t in (5, 4, 3, 2, 1)}
    tube_onnx = onnx.load(out / "RAPSAMR50Tube.onnx").graph
    assert [d.dim_param or d.dim_value for d in tube_onnx.input[0].type.tensor_type.shape.dim] == [
        "frames",
        256,
        64,
        88,
    ]
    meta = decoder.spec.description.metadata.userDefined
    assert meta["com.samexport.family"] == "rapsam" and json.loads(meta["com.samexport.input_size"]) == list(
        SMALL
    )


def test_segment_gives_one_mask_per_prompt_and_panoptic_segments(tmp_path):
    from PIL import Image

    from samexport.errors import InputError
    from samexport.samples import validation_image
    from samexport.segment import SegmentOptions, segment

    image = tmp_path / "scene.png"
    Image.fromarray(validation_image()).save(image)

    def options(**kwargs):
        return SegmentOptions(
            image=image, encoder="rapsam", output=tmp_path / "out.png", force=True, **kwargs
        )

    document = segment(
        options(points=[(200.0, 190.0, 1), (480.0, 170.0, 1)], boxes=[(290, 280, 610, 470)]), True
    )
    assert document["backend"] == "torch" and len(document["masks"]) == 3
    assert all(m["predicted_iou"] is not None and m["area"] > 0 for m in document["masks"])
    document = segment(options(everything=True), True)
    # fixture weights: no query reaches the official 0.8 class probability, so no segment (the fusion itself
    # is checked against the official one in test_rapsam.py)
    assert document["mode"] == "everything" and document["masks"] == [] and document["generator"] is None
    with pytest.raises(InputError, match="no negative clicks"):
        segment(options(points=[(200.0, 190.0, 0)]), True)


def test_bench_measures_encoder_decoder_panoptic_and_tube_heads():
    from samexport.bench import report
    from samexport.bench.orchestrate import Bench, BenchOptions

    bench = Bench(BenchOptions(device="cpu", encoders=("rapsam_r50",), points=(1, 4)), quiet=True)
    jobs = list(bench.jobs())
    assert [(part, size) for _, part, size, _ in jobs] == [
        ("encoder", None),
        ("decoder", 1),
        ("decoder", 4),
        ("panoptic", None),
        *(("tube", frames) for frames in (5, 4, 3, 2, 1)),
    ]
    rows = [bench.row_template(n, part, size, unit, "fp32", None) for n, part, size, unit in jobs]
    assert [r["gmacs"] for r in rows] == [
        113.74,
        7.276,
        7.276,
        13.399,
        63.413,
        50.879,
        38.345,
        25.812,
        13.278,
    ]
    assert report._part_label(rows[3]) == "panoptic" and report._part_label(rows[2]) == "decoder, 4 pts"
    assert [report._part_label(r) for r in rows[4:6]] == ["tube, 5 frames", "tube, 4 frames"]
    assert rows[8]["frames"] == 1 and rows[8]["points"] is None
    with pytest.raises(UsageError, match="ios_harness app runs SAM-style encoder"):
        BenchOptions(device="iphone", encoders=("rapsam_r50",), prepare_only=True)


def test_the_panoptic_head_is_written_only_when_the_classes_are_known(tmp_path):
    from samexport.checkpoint import random_fill
    from samexport.export.options import ConvertOptions, artifact_names
    from samexport.export.target import targets
    from samexport.families.rapsam.family import fill_classifier
    from samexport.families.registry import get_spec

    spec = get_spec("rapsam_r50")
    checkpoint = tmp_path / "rapsam_r50_12e.pth"
    torch.save(fill_classifier(random_fill), tmp_path / "coco.pth")
    torch.save(fill_classifier(random_fill, video=True), tmp_path / "ytvis.pth")

    def parts(**kwargs):
        names = artifact_names(spec, ConvertOptions(encoder="rapsam_r50", target="all", **kwargs))
        return {p: sorted(t for t, part in names if part == p) for p in ("panoptic", "tube")}

    every = sorted(targets())
    assert parts() == {"panoptic": every, "tube": every}  # fixture weights: both fixture classifiers
    assert parts(checkpoint=checkpoint) == {"panoptic": [], "tube": []}  # a checkpoint alone: prompts only
    assert parts(checkpoint=checkpoint, classifier=tmp_path / "coco.pth") == {"panoptic": every, "tube": []}
    assert parts(checkpoint=checkpoint, classifier=tmp_path / "ytvis.pth") == {"panoptic": [], "tube": every}


class WideAttention(torch.nn.Module):
    """One query attending to 20,000 keys (RAP-SAM's prompt adaptor reads 54,400) and to 100."""

    def forward(self, q, k, v):
        wide = torch.matmul(torch.softmax(torch.matmul(q, k.transpose(1, 2)), dim=-1), v)
        narrow = torch.matmul(torch.softmax(torch.matmul(q, k[:, :100].transpose(1, 2)), dim=-1), v[:, :100])
        return wide + narrow


def test_fp16_keeps_a_softmax_over_more_than_16384_keys_in_float32(tmp_path):
    """A uniform weight over 20,000 keys (5e-5) is below float16's smallest normal number: that softmax and
    the matmul reading it stay float32; the 100-key softmax is float16."""
    example = (torch.randn(1, 1, 8), torch.randn(1, 20000, 8) * 0.1, torch.randn(1, 20000, 8))
    traced = coreml_export.trace(WideAttention(), example)
    types = [coreml_export.tensor_input(f"x{i}", tuple(e.shape)) for i, e in enumerate(example)]
    mlmodel = coreml_export.convert(traced, types, ["y"], "fp16", "iOS16", float32_region())
    path = tmp_path / "attention.mlpackage"
    mlmodel.save(str(path))
    program, kept = float32_ops(path)
    assert sorted(op.op_type for op in kept) == ["matmul", "softmax"]
    softmaxes = [op for op in program.operations if op.op_type == "softmax"]
    assert sorted(dtype_name(op.outputs[0]) for op in softmaxes) == ["fp16", "fp32"]
    result = evaluate(program, {f"x{i}": e.numpy() for i, e in enumerate(example)})
    with torch.no_grad():
        expected = WideAttention()(*example).numpy()
    assert np.abs(result.outputs["y"] - expected).max() < 1e-2 * np.abs(expected).max()


def test_every_target_names_rapsams_parts_and_fp32_apart_from_fp16():
    """`--target all` names every part for every target (a bare KeyError once a third target existed), and
    the variant suffix reaches every Core ML file (fp16 and fp32 packages once shared names)."""
    from samexport.export.options import ConvertOptions, artifact_names
    from samexport.export.target import targets
    from samexport.families.registry import get_spec

    spec = get_spec("rapsam_r50")
    names = {
        p: artifact_names(spec, ConvertOptions(encoder="rapsam_r50", target="all", precision=p))
        for p in PRECISIONS
    }
    assert {t for t, _ in names["fp16"] if t != "manifest"} == set(targets())
    coreml = {p: {n for (t, _), n in names[p].items() if t == "coreml"} for p in PRECISIONS}
    assert coreml["fp32"] == {
        f"RAPSAMR50{part}FP32.mlpackage" for part in ("Encoder", "Decoder", "Panoptic", "Tube")
    }
    assert not coreml["fp16"] & coreml["fp32"]
    assert names["fp32"][("manifest", "")] == "RAPSAMR50FP32.export.json"


@pytest.mark.slow
def test_fp16_and_fp32_coreml_exports_sit_side_by_side(tmp_path):
    from samexport.export.convert import convert
    from samexport.export.options import ConvertOptions

    for precision in PRECISIONS:
        options = ConvertOptions(
            encoder="rapsam_r50",
            target="coreml",
            precision=precision,
            input_size=SMALL,
            output_dir=tmp_path,
            validate=False,
        )
        convert(options, quiet=True)
    for stem, suffix in (("RAPSAMR50", ""), ("RAPSAMR50FP32", "FP32")):
        manifest = json.loads((tmp_path / f"{stem}.export.json").read_text())
        listed = {entry["path"] for entry in manifest["files"]["coreml"].values()}
        assert listed == {
            f"RAPSAMR50{part}{suffix}.mlpackage" for part in ("Encoder", "Decoder", "Panoptic", "Tube")
        }
        assert all((tmp_path / name).exists() for name in listed)
