"""`samexport convert`: exported models compute what the official models compute; bad input
fails with one line and leaves nothing behind.

Without a checkpoint samexport uses the parity fill, so an export of the default weights can be
compared directly with the official reference outputs in ../shared/parity.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import (
    FIXTURE_FAMILIES,
    build_quiet,
    fixture_npz,
    invoke,
    one_line_error,
    rel_err,
    run_cli,
    start_convert_in_background,
)
from samexport.coreml_package import CoreMLPackage
from samexport.errors import SamExportError, UsageError
from samexport.export import coreml_export, onnx_export
from samexport.export.convert import convert
from samexport.export.options import ConvertOptions

REL_TOL = 1e-4


def sam_style_feeds(z, i):
    coords = z[f"case_{i}_coords_model"].astype(np.float32)
    feeds = {
        "imageEmbeddings": z["image_embeddings"],
        "pointCoords": coords,
        "pointLabels": z[f"case_{i}_labels_model"].astype(np.float32),
    }
    if "case_4_mask_input_token" in z.files:
        if i == 4:
            mask = z["case_0_low_res_masks"][:, int(z["case_4_mask_input_token"])][None]
            feeds.update(maskInput=mask.astype(np.float32), hasMaskInput=np.ones(1, np.float32))
        else:
            feeds.update(
                maskInput=np.zeros((1, 1, 256, 256), np.float32), hasMaskInput=np.zeros(1, np.float32)
            )
    return feeds


@pytest.mark.parametrize(
    "name,swift", [("repvit", "RepViTSAM"), ("tinyvit", "MobileSAM"), ("efficientsam_ti", "EfficientSAMTi")]
)
def test_onnx_encoder_matches_official(exports, name, swift):
    out, _ = exports
    z = fixture_npz(FIXTURE_FAMILIES[name])
    from samexport import get_spec

    tensor = get_spec(name).build().preprocess(z["image"]).numpy()
    (embeddings,) = onnx_export.run(out / f"{swift}Encoder.onnx", {"image": tensor})
    assert rel_err(embeddings, z["image_embeddings"]) <= REL_TOL


@pytest.mark.parametrize("name,swift", [("tinyvit", "MobileSAM"), ("efficientsam_ti", "EfficientSAMTi")])
def test_onnx_decoder_matches_official_for_every_case(exports, name, swift):
    out, _ = exports
    z = fixture_npz(FIXTURE_FAMILIES[name])
    session = onnx_export.session(out / f"{swift}Decoder.onnx")
    i = 0
    while f"case_{i}_coords_model" in z.files:
        masks, iou = session.run(None, sam_style_feeds(z, i))
        assert rel_err(masks, z[f"case_{i}_low_res_masks"]) <= REL_TOL, i
        assert rel_err(iou, z[f"case_{i}_iou_predictions"]) <= REL_TOL, i
        i += 1
    assert i == (5 if name == "tinyvit" else 4)


def test_sam_onnx_decoder_takes_any_point_count(exports):
    out, _ = exports
    session = onnx_export.session(out / "MobileSAMDecoder.onnx")
    embeddings = np.random.default_rng(0).standard_normal((1, 256, 64, 64)).astype(np.float32)
    for n in (1, 7, 20):
        feeds = {
            "imageEmbeddings": embeddings,
            "pointCoords": np.full((1, n, 2), 300, np.float32),
            "pointLabels": np.ones((1, n), np.float32),
            "maskInput": np.zeros((1, 1, 256, 256), np.float32),
            "hasMaskInput": np.zeros(1, np.float32),
        }
        masks, iou = session.run(None, feeds)
        assert masks.shape == (1, 4, 256, 256) and iou.shape == (1, 4)


def test_manifest_records_what_was_done(exports):
    out, manifests = exports
    m = json.loads((out / "MobileSAM.export.json").read_text())
    assert m == json.loads(json.dumps(manifests["tinyvit"]))
    assert m["checkpoint"] == {"path": None, "sha256": "random-init"}
    assert m["reparameterization"]["fused_modules"] > 0 and m["reparameterization"]["batchnorm_left"] == 0
    assert m["reparameterization"]["encoder_error_vs_unfused"]["rel"] < 1e-5
    assert m["onnx"]["opset"] == 20 and m["onnx"]["encoder"]["simplified"]
    onnx_encoder = m["validation"]["onnx"]["encoder"]["worst"]["imageEmbeddings"]
    assert m["validation"]["onnx"]["passed"] and onnx_encoder["rel"] <= REL_TOL
    assert m["validation"]["coreml"]["passed"] and set(m["validation"]["coreml"]) == {
        "reference",
        "encoder",
        "decoder",
        "passed",
    }
    assert m["format"] == "samexport.export/2" and m["model"]["family"] == "sam"
    assert m["model"]["artifact_stem"] == "MobileSAM"
    assert m["decoder_prompt"]["token_counts"] == [2, 3, 4, 5, 6, 8, 9, 16, 17]
    for entry in (e for parts in m["files"].values() for e in parts.values()):
        assert (out / entry["path"]).exists() and entry["bytes"] > 1_000_000
    for key in ("samexport", "torch", "coremltools", "onnx", "onnxruntime"):
        assert m["versions"][key]
    assert m["input_contract"]["pad_color_rgb"] == [123.675, 116.28, 103.53]
    assert not list(out.glob(".samexport-*")), "temporary folder left behind"


def test_coreml_packages_have_the_promised_interface(exports):
    out, manifests = exports
    encoder = CoreMLPackage(out / "MobileSAMEncoder.mlpackage").io
    assert encoder["inputs"] == [
        {"name": "image", "kind": "image", "width": 1024, "height": 1024, "color_space": "RGB"}
    ]
    assert encoder["outputs"][0]["name"] == "imageEmbeddings" and encoder["outputs"][0]["dtype"] == "float32"
    decoder_package = CoreMLPackage(out / "MobileSAMDecoder.mlpackage")
    decoder = decoder_package.io
    points = {f["name"]: f for f in decoder["inputs"]}["points"]
    assert sorted(s[1] for s in points["enumerated_shapes"]) == [2, 3, 4, 5, 6, 8, 9, 16, 17]
    assert not points["range_flexible"]
    assert [f["name"] for f in decoder["outputs"]] == ["lowResMasks", "iouScores"]
    census = manifests["tinyvit"]["coreml"]["encoder"]["op_census"]
    assert "batch_norm" not in census and census["conv"] > 0
    contract = json.loads(decoder_package.metadata["com.samexport.contract"])
    assert contract["mask_threshold"] == 0.0 and contract["family"] == "sam"
    assert decoder_package.metadata["com.samexport.family"] == "sam"


def test_first_conv_fold_is_exact():
    """ImageType gives pixel - mean; 1/std folded into the first conv must equal the official input."""
    import torch

    from samexport.families import EncoderForExport
    from samexport.modeling.transforms import SAM_PIXEL_MEAN, SAM_PIXEL_STD

    model = build_quiet("repvit")
    pixels = torch.randint(0, 256, (1, 3, 128, 128), generator=torch.Generator().manual_seed(0)).float()
    mean = torch.tensor(SAM_PIXEL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(SAM_PIXEL_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        official = model.image_encoder((pixels - mean) / std)
        folded = EncoderForExport(model.image_encoder, SAM_PIXEL_STD)(pixels - mean)
    assert rel_err(folded.numpy(), official.numpy()) < 2e-5


def test_existing_output_needs_force(exports, tmp_path):
    out, _ = exports
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    result = run_cli("convert", "--encoder", "tinyvit", "--target", "onnx", "--output-dir", str(out))
    assert "already exists; pass --force" in one_line_error(result)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_wrong_family_checkpoint_writes_nothing(tmp_path, fixture_checkpoint):
    out = tmp_path / "out"
    result = run_cli(
        "convert",
        "--encoder",
        "repvit",
        "--checkpoint",
        str(fixture_checkpoint("tinyvit")),
        "--output-dir",
        str(out),
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0]
    assert "looks like tinyvit, not repvit" in errors[0]
    assert not out.exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--points", "0"], "--points must be point counts from 1 to 64"),
        (["--points", "1,x"], "comma-separated integers"),
        (["--target", "onnx", "--compress", "palettize4"], "Core ML only"),
        (["--target", "tflite"], "unknown --target"),
        (["--min-target", "iOS15"], "unknown --min-target"),
        (["--target", "coreai", "--precision", "fp16"], "--precision fp16 does not apply to Core AI"),
        (["--target", "onnx,litert", "--precision", "fp16"], "--precision fp16 does not apply to ONNX"),
        (["--target", "litert", "--min-target", "iOS18"], "--min-target does not apply to LiteRT"),
        (
            ["--target", "onnx", "--compress", "int8", "--keep-layers", "first-last"],
            "--keep-layers does not apply to ONNX",
        ),
        (["--target", "all", "--compress", "int8", "--keep-layers", "first-last"], "--compress int8 is"),
        (["--precision", "fp8"], "unknown --precision 'fp8'"),
    ],
)
def test_bad_options_one_line_exit_2(capsys, tmp_path, args, message):
    result = invoke(capsys, "convert", "--encoder", "tinyvit", "--output-dir", str(tmp_path / "out"), *args)
    assert message in one_line_error(result)
    assert not (tmp_path / "out").exists()


def test_choices_are_case_insensitive_and_targets_keep_their_own_defaults():
    options = ConvertOptions(encoder="tinyvit", target="LiteRT", precision="FP32", compress="INT8")
    assert (options.targets, options.precision, options.compress) == (("litert",), "fp32", "int8")
    assert (
        ConvertOptions(encoder="tinyvit", target="coreml", decoder_shapes="MultiFunction").decoder_shapes
        == "multifunction"
    )
    every = ConvertOptions(encoder="tinyvit", target="all")  # fp16 where offered, float32 elsewhere
    assert every.precision == "fp16" and every.min_target == "iOS16"
    assert ConvertOptions(encoder="tinyvit", target="all", precision="fp16").targets[0] == "onnx"


def test_help_names_every_target(capsys):
    from samexport.export.target import targets

    top = invoke(capsys, "--help").stdout
    assert all(t.title in " ".join(top.split()) for t in targets().values())
    convert_help = " ".join(invoke(capsys, "convert", "--help").stdout.split())
    # the lists come from the registry: every target's compressions and precisions are named
    assert (
        "int8 (ONNX, Core ML, LiteRT)" in convert_help and "Arithmetic of Core ML and LiteRT" in convert_help
    )
    assert all(t.name in convert_help for t in targets().values())


def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UsageError, match="is a file"):
        convert(ConvertOptions(encoder="tinyvit", target="onnx", output_dir=blocker), quiet=True)
    with pytest.raises(UsageError, match="cannot write to --output-dir"):
        convert(ConvertOptions(encoder="tinyvit", target="onnx", output_dir=blocker / "sub"), quiet=True)


@pytest.mark.slow
def test_failed_run_leaves_nothing(tmp_path, monkeypatch):
    """A failure after the ONNX files were written (here: in Core ML conversion) removes everything, and
    the error names the targets that would still convert."""

    def broken(*args, **kwargs):
        raise SamExportError("simulated converter failure")

    monkeypatch.setattr(coreml_export, "convert", broken)
    out = tmp_path / "out"
    with pytest.raises(
        SamExportError, match=r"simulated converter failure \(--target onnx,coreai,litert writes"
    ):
        convert(ConvertOptions(encoder="tinyvit", target="all", output_dir=out), quiet=True)
    assert not out.exists()  # the run created the folder, and removes it


@pytest.mark.parametrize(
    "target,args,message",
    [
        ("coreai", ["--compress", "int8"], "--compress int8 is ONNX, Core ML and LiteRT only"),
        ("coreai", ["--decoder-shapes", "multifunction"], "--decoder-shapes multifunction is Core ML only"),
        (
            "litert",
            ["--compress", "palettize4"],
            "is Core ML only; use --target coreml, or --compress int8 for",
        ),
        ("litert", ["--decoder-shapes", "multifunction"], "--decoder-shapes multifunction is Core ML only"),
    ],
)
def test_what_a_target_cannot_write_is_refused_in_one_line(capsys, tmp_path, target, args, message):
    result = invoke(
        capsys, "convert", "--encoder", "tinyvit", "--target", target, "--output-dir", str(tmp_path), *args
    )
    assert message in one_line_error(result), args
    assert not any(tmp_path.iterdir())


def test_onnx_over_protobuf_limit_is_refused_up_front(capsys, tmp_path):
    result = invoke(
        capsys, "convert", "--encoder", "sam_vit_h", "--target", "all", "--output-dir", str(tmp_path / "out")
    )
    assert (
        result.returncode == 2
        and "2 GB single-file limit" in result.stderr
        and "--target coreml" in result.stderr
    )
    assert not (tmp_path / "out").exists()


def test_sigterm_mid_run_leaves_nothing(tmp_path):
    """A run stopped with SIGTERM (as by a CI timeout or `kill`) removes its temporary folder."""
    import signal

    out = tmp_path / "out"
    proc = start_convert_in_background(out)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM
    assert stderr.strip().splitlines()[-1].startswith("error: terminated (SIGTERM)")
    assert not out.exists()  # the run created it, and removes it


@pytest.mark.parametrize("name,swift", [("tinyvit", "MobileSAM"), ("efficientsam_ti", "EfficientSAMTi")])
def test_info_size_estimate_says_what_is_written(exports, name, swift):
    """Issue 12 item 8: the fp16 estimate covers what the package stores, and says what it leaves out."""
    from samexport.fsutil import tree_bytes
    from samexport.info import model_info

    out, _ = exports
    estimate = model_info(name)["fp16_mb"]
    decoder = tree_bytes(out / f"{swift}Decoder.mlpackage") / 1e6
    encoder = tree_bytes(out / f"{swift}Encoder.mlpackage") / 1e6
    assert abs(decoder - estimate["decoder"]) <= 0.03 * decoder, (decoder, estimate)
    assert estimate["encoder"] <= encoder <= 1.2 * estimate["encoder"], (encoder, estimate)
    assert "dense positional encoding" in estimate["covers"]
