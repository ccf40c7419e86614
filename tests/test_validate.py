"""Core ML packages checked without a Mac: the saved ML programs, evaluated op by op in NumPy,
compute what the official models compute; `samexport validate` gives the verdict and says where
an fp16 program breaks.

Each package is compared with the official reference outputs in ../shared/parity (the default
weights are the parity fill), so these tests hold the converter and the evaluator to the same
ground truth as the PyTorch models.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from helpers import FIXTURE_FAMILIES, fixture_npz, run_cli, write_fixture_checkpoint
from samexport import get_spec
from samexport.export.compare import compare
from samexport.export.convert import convert
from samexport.export.options import ConvertOptions
from samexport.export.quality import FP16_MIN_PSNR_DB, FP32_MAX_REL
from samexport.mileval import evaluate, load_program

cli = run_cli


@pytest.fixture(scope="session")
def coreml_exports(exports, tmp_path_factory):
    """name -> folder with that model's Core ML packages: tinyvit and efficientsam_ti (fp16) from the
    shared exports, repvit converted here in fp32 without convert's own check."""
    out, _ = exports
    fp32 = tmp_path_factory.mktemp("coreml_fp32")
    convert(
        ConvertOptions(encoder="repvit", target="coreml", output_dir=fp32, precision="fp32", validate=False),
        quiet=True,
    )
    return {"tinyvit": out, "efficientsam_ti": out, "repvit": fp32}


def official_encoder_feed(name: str, z) -> np.ndarray:
    """The 0..255 pixels whose normalization is exactly the official input tensor."""
    spec = get_spec(name)
    tensor = spec.build().preprocess(z["image"]).numpy()
    mean, std = (
        np.array(v, np.float32).reshape(1, 3, 1, 1)
        for v in (spec.family.pixel_mean_255, spec.family.pixel_std_255)
    )
    return tensor * std + mean


def official_decoder_cases(name: str, z):
    spec = get_spec(name)
    i = 0
    while f"case_{i}_coords_model" in z.files:
        mask = None
        if "case_4_mask_input_token" in z.files and i == 4:
            mask = torch.as_tensor(z["case_0_low_res_masks"][:, int(z["case_4_mask_input_token"])][None])
        signature = spec.family.decoder_signature([z[f"case_{i}_coords_model"].shape[1]])
        feeds = signature.feeds(
            z["image_embeddings"],
            torch.as_tensor(z[f"case_{i}_coords_model"]),
            torch.as_tensor(z[f"case_{i}_labels_model"]),
            mask,
            packed=True,
        )
        yield i, feeds, z[f"case_{i}_low_res_masks"], z[f"case_{i}_iou_predictions"]
        i += 1


@pytest.mark.parametrize(
    "name,package,precision",
    [
        ("repvit", "RepViTSAMEncoderFP32", "fp32"),
        ("tinyvit", "MobileSAMEncoder", "fp16"),
        ("efficientsam_ti", "EfficientSAMTiEncoder", "fp16"),
    ],
)
def test_encoder_program_matches_official(coreml_exports, name, package, precision):
    z = fixture_npz(FIXTURE_FAMILIES[name])
    program = load_program(coreml_exports[name] / f"{package}.mlpackage")
    assert program.is_fp16() == (precision == "fp16")
    result = evaluate(program, {"image": official_encoder_feed(name, z)})
    r = compare(result.outputs["imageEmbeddings"], z["image_embeddings"])
    assert r["non_finite"] == 0
    if precision == "fp32":
        assert r["rel"] <= FP32_MAX_REL, r
    else:
        assert r["psnr_db"] >= FP16_MIN_PSNR_DB, r
        assert 0 < result.fp16_peak["max_abs"] < 65504 and not result.fp16_overflows


@pytest.mark.parametrize(
    "name,package,precision,cases",
    [
        ("repvit", "RepViTSAMDecoderFP32", "fp32", 5),
        ("tinyvit", "MobileSAMDecoder", "fp16", 5),
        ("efficientsam_ti", "EfficientSAMTiDecoder", "fp16", 4),
    ],
)
def test_decoder_program_matches_official_for_every_case(coreml_exports, name, package, precision, cases):
    z = fixture_npz(FIXTURE_FAMILIES[name])
    program = load_program(coreml_exports[name] / f"{package}.mlpackage")
    seen = 0
    for i, feeds, masks, iou in official_decoder_cases(name, z):
        outputs = evaluate(program, feeds).outputs
        for actual, expected in ((outputs["lowResMasks"], masks), (outputs["iouScores"], iou)):
            r = compare(actual, expected)
            assert r["non_finite"] == 0, (i, r)
            assert r["rel"] <= FP32_MAX_REL if precision == "fp32" else r["psnr_db"] >= FP16_MIN_PSNR_DB, (
                i,
                r,
            )
        seen += 1
    assert seen == cases


def test_convert_records_the_numpy_check(exports):
    out, manifests = exports
    coreml = manifests["tinyvit"]["validation"]["coreml"]
    assert coreml["passed"] and coreml["encoder"]["passed"] and coreml["decoder"]["passed"]
    encoder = coreml["encoder"]
    floors = encoder["floors"]
    assert "NumPy evaluation" in encoder["runner"] and floors == {
        "imageEmbeddings": {"min_psnr_db": FP16_MIN_PSNR_DB}
    }
    embeddings = encoder["cases"]["validation image"]["imageEmbeddings"]
    assert embeddings["psnr_db"] >= FP16_MIN_PSNR_DB
    assert embeddings["fp32_evaluation"]["psnr_db"] >= FP16_MIN_PSNR_DB
    assert encoder["evaluation"]["fp16_peak"]["max_abs"] < 65504
    decoder = coreml["decoder"]
    # Every enumerated point count of the decoder was evaluated, not only the validation prompts'.
    assert (
        sorted({case["inputs"]["points"][1] for case in decoder["cases"].values()})
        == manifests["tinyvit"]["decoder_prompt"]["token_counts"]
    )
    assert all(case["lowResMasks"]["psnr_db"] >= FP16_MIN_PSNR_DB for case in decoder["cases"].values())
    assert json.loads((out / "MobileSAM.export.json").read_text())["validation"]["coreml"] == coreml


def test_validate_cli_passes_a_good_package(coreml_exports, tmp_path):
    package = coreml_exports["tinyvit"] / "MobileSAMDecoder.mlpackage"
    result = cli("validate", str(package), "--method", "numpy", "--json", str(tmp_path / "report.json"))
    assert result.returncode == 0, result.stderr
    assert "MobileSAMDecoder.mlpackage: PASS" in result.stdout and "seeded clicks" in result.stdout
    report = json.loads((tmp_path / "report.json").read_text())[str(package)]
    assert report["passed"] and report["floors"]["lowResMasks"] == {"min_psnr_db": FP16_MIN_PSNR_DB}


@pytest.mark.slow
def test_fp16_overflow_fails_with_its_origin_and_is_recorded(tmp_path):
    """A checkpoint whose neck conv overflows fp16: NaN on device. The check names the op."""
    checkpoint = write_fixture_checkpoint(FIXTURE_FAMILIES["tinyvit"], tmp_path / "mobile_sam.pt")
    state = torch.load(checkpoint, weights_only=True)
    state["image_encoder.neck.0.weight"] = state["image_encoder.neck.0.weight"] * 1e5
    torch.save(state, checkpoint)
    out = tmp_path / "out"
    converted = cli(
        "convert",
        "--encoder",
        "tinyvit",
        "--target",
        "coreml",
        "--checkpoint",
        str(checkpoint),
        "--output-dir",
        str(out),
        "--no-validate",
        "--quiet",
    )
    assert converted.returncode == 0, converted.stderr
    manifest = out / "MobileSAM.export.json"
    result = cli("validate", str(manifest), "--checkpoint", str(checkpoint))
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert (
        "MobileSAMEncoder.mlpackage" in error and "NaN/Inf" in error and "fp16 overflow in conv op" in error
    )
    assert "MobileSAMDecoder.mlpackage: PASS" in result.stdout
    coreml = json.loads(manifest.read_text())["validation"]["coreml"]
    assert not coreml["passed"] and not coreml["encoder"]["passed"] and coreml["decoder"]["passed"]
    assert coreml["encoder"]["evaluation"]["fp16_overflow_count"] > 0
    # convert's own check refuses the same export and leaves nothing behind.
    refused = cli(
        "convert",
        "--encoder",
        "tinyvit",
        "--target",
        "coreml",
        "--checkpoint",
        str(checkpoint),
        "--output-dir",
        str(tmp_path / "refused"),
        "--quiet",
    )
    assert refused.returncode == 1 and "fp16 overflow in conv op" in refused.stderr
    assert not (tmp_path / "refused").exists() or not list((tmp_path / "refused").iterdir())


@pytest.mark.parametrize(
    "args,message",
    [
        (["--checkpoint", "{ckpt}"], "was converted without a checkpoint"),
        (["--method", "coreml"], "macOS"),
        (["--method", "fast"], "unknown --method"),
    ],
)
def test_validate_bad_input_is_one_line_exit_2(coreml_exports, tmp_path, fixture_checkpoint, args, message):
    package = coreml_exports["tinyvit"] / "MobileSAMDecoder.mlpackage"
    args = [a.replace("{ckpt}", str(fixture_checkpoint("tinyvit"))) for a in args]
    result = cli("validate", str(package), *args)
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_validate_refuses_what_is_not_a_package(coreml_exports, tmp_path):
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"not a package")
    other = tmp_path / "model.pte"
    other.write_bytes(b"not ours")
    tflite = tmp_path / "model.tflite"
    tflite.write_bytes(b"not a flatbuffer")
    copied = tmp_path / "Copy.mlpackage"
    shutil.copytree(coreml_exports["tinyvit"] / "MobileSAMDecoder.mlpackage", copied)
    shutil.rmtree(copied / "Data" / "com.apple.CoreML" / "weights")
    for path, message in (
        (onnx_file, "is not a readable ONNX file"),
        (other, "is no export samexport writes"),
        (tflite, "is not a readable LiteRT model"),
        (tmp_path / "missing.mlpackage", "does not exist"),
        (copied, "is not a readable Core ML package"),
    ):
        result = cli("validate", str(path))
        assert result.returncode == 2 and message in result.stderr, (path, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
