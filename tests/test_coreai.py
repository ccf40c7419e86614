"""Core AI target: `.aimodel` assets checked by Apple's own runtime (coreai-core's Linux build, its reference
CPU path), the segmenter bundle, `validate` and `segment` through the same runtime."""

from __future__ import annotations

import json

import pytest
from toy_family import toy_registered

from helpers import invoke, one_line_error
from samexport.families.registry import get_spec


@pytest.fixture(scope="module")
def toy_coreai(toy_exports):
    """The toy family exported to Core AI with two token counts and two prompt-set counts."""
    exported = toy_exports("coreai")
    with toy_registered():
        yield exported


def test_every_part_is_checked_by_apples_runtime_within_the_exact_floor(toy_coreai):
    out, manifest = toy_coreai
    report = manifest["validation"]["coreai"]
    assert report["passed"]
    for part, output in (("encoder", "imageEmbeddings"), ("decoder", "lowResMasks")):
        assert "Core AI runtime" in report[part]["runner"]
        assert report[part]["floors"][output] == {"min_psnr_db": 60.0}
        assert report[part]["worst"][output]["rel"] <= 1e-5
    # the toy's token count (3) for one and four prompt sets: one static function each, the default `main`
    assert manifest["coreai"]["functions"]["decoder"] == ["main", "points_3_batch_4"]
    assert {tuple(c["inputs"]["points"][:2]) for c in report["decoder"]["cases"].values()} == {(1, 3), (4, 3)}


def test_the_segmenter_bundle_holds_the_assets_and_the_contract(toy_coreai):
    out, manifest = toy_coreai
    assert manifest["files"]["coreai"]["decoder"]["path"] == "ToyThree.coreai/ToyThreeDecoder.aimodel"
    bundle = json.loads((out / "ToyThree.coreai" / "metadata.json").read_text())
    assert bundle["kind"] == "segmenter" and bundle["metadata_version"] == "0.2"
    assert bundle["assets"] == {"encoder": "ToyThreeEncoder.aimodel", "decoder": "ToyThreeDecoder.aimodel"}
    assert bundle["samexport"]["contract"]["family"] == "threetoken"
    assert bundle["samexport"]["parts"]["decoder"]["inputs"][1]["name"] == "points"
    asset = json.loads((out / "ToyThree.coreai" / "ToyThreeDecoder.aimodel" / "metadata.json").read_text())
    meta = asset["creatorDefinedMetadata"]
    assert meta["com.samexport.part"] == "decoder" and json.loads(meta["com.samexport.token_counts"]) == [3]
    assert set(json.loads(meta["com.samexport.functions"])) == {"main", "points_3_batch_4"}


def test_validate_reruns_apples_runtime_on_the_assets(toy_coreai, capsys):
    from samexport.export.validate import validate

    out, _ = toy_coreai
    reports = validate([out / "ToyThree.export.json"])
    assert all(r.passed for r in reports.values()) and len(reports) == 2
    asset = out / "ToyThree.coreai" / "ToyThreeEncoder.aimodel"
    report = validate([asset])[str(asset)]
    assert report.passed and report.runner.startswith("Core AI runtime")
    assert json.loads((out / "ToyThree.export.json").read_text())["validation"]["coreai"]["passed"]


def test_validate_takes_the_bundle_convert_wrote(toy_coreai):
    from samexport.export.validate import validate

    out, _ = toy_coreai
    reports = validate([out / "ToyThree.coreai"])
    assert sorted(reports) == sorted(
        str(out / "ToyThree.coreai" / f) for f in ("ToyThreeEncoder.aimodel", "ToyThreeDecoder.aimodel")
    )
    assert all(r.passed for r in reports.values())


def copy_bundle(out, tmp_path):
    import shutil

    shutil.copytree(out / "ToyThree.coreai", tmp_path / "ToyThree.coreai")
    return tmp_path / "ToyThree.coreai"


@pytest.mark.parametrize(
    "content, expected",
    [
        ("[]", "metadata.json is not readable (not a JSON object)"),
        ("[" * 200_000 + "]" * 200_000, "metadata.json is not readable (RecursionError)"),
        ("{not json", "metadata.json is not readable (JSONDecodeError)"),
        ('{"creatorDefinedMetadata": []}', "creatorDefinedMetadata is not an object"),
    ],
)
def test_a_damaged_asset_metadata_is_one_line(toy_coreai, tmp_path, capsys, content, expected):
    out, _ = toy_coreai
    asset = copy_bundle(out, tmp_path) / "ToyThreeDecoder.aimodel"
    (asset / "metadata.json").write_text(content)
    assert expected in one_line_error(invoke(capsys, "validate", str(asset)))


def test_damaged_function_lists_and_bundles_are_one_line(toy_coreai, tmp_path, capsys):
    out, _ = toy_coreai
    bundle = copy_bundle(out, tmp_path)
    metadata = bundle / "ToyThreeDecoder.aimodel" / "metadata.json"
    document = json.loads(metadata.read_text())
    document["creatorDefinedMetadata"]["com.samexport.functions"] = "main: points"
    metadata.write_text(json.dumps(document))
    error = one_line_error(invoke(capsys, "validate", str(bundle / "ToyThreeDecoder.aimodel")))
    assert "com.samexport.functions metadata is damaged" in error
    (bundle / "metadata.json").write_text(json.dumps({"kind": "segmenter", "assets": {"decoder": "../../x"}}))
    assert "outside the bundle" in one_line_error(invoke(capsys, "validate", str(bundle)))


def test_a_truncated_program_is_a_one_line_error_and_leaves_no_folder_behind(
    toy_coreai, tmp_path, capsys, monkeypatch
):
    """Apple's runtime crashes (SIGSEGV) on a truncated program, in the runner's child process: one line,
    exit 2, and the runner's temporary folder removed."""
    out, _ = toy_coreai
    asset = copy_bundle(out, tmp_path) / "ToyThreeEncoder.aimodel"
    program = next(p for p in asset.rglob("*") if p.is_file() and p.suffix == ".mlirb")
    program.write_bytes(program.read_bytes()[: program.stat().st_size // 2])
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))
    error = one_line_error(invoke(capsys, "validate", str(asset)))
    assert (
        "Core AI runtime stopped while loading ToyThreeEncoder.aimodel" in error
        and "convert it again" in error
    )
    assert not list(temporary.iterdir())


def test_a_folder_left_by_a_killed_run_is_removed_by_the_next(tmp_path):
    """SIGKILL during a Core AI check left samexport-coreai-* in the system's temporary folder."""
    import subprocess
    import sys

    from samexport.fsutil import remove_abandoned

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    left = tmp_path / f"samexport-coreai-{gone.stdout.strip()}-abc"
    left.mkdir()
    (left / "stderr.txt").write_text("")
    alive = tmp_path / f"samexport-coreai-{os_getpid()}-def"
    alive.mkdir()
    remove_abandoned(tmp_path, "samexport-coreai-")
    assert not left.exists() and alive.exists()


def os_getpid() -> int:
    import os

    return os.getppid()  # pytest's parent: a live process that is not this one


@pytest.mark.slow
@pytest.mark.parametrize("model", ["rapsam_r50"])
def test_a_real_family_converts_and_apples_runtime_reproduces_pytorch(tmp_path, model):
    """RAP-SAM's four parts at a small input size through Apple's converter and runtime, held to the floor of
    a float32 runtime with its own kernels (MobileSAM and EfficientSAM-Ti go through Core AI in the session's
    `exports` fixture, the toy in test_targets.py)."""
    from samexport.export.convert import convert
    from samexport.export.options import ConvertOptions

    extra = {"input_size": (256, 352), "points": (1, 3)} if get_spec(model).family.prompts_are_queries else {}
    manifest = convert(
        ConvertOptions(encoder=model, target="coreai", output_dir=tmp_path, **extra), quiet=True
    )
    report = manifest["validation"]["coreai"]
    assert report["passed"]
    assert set(manifest["files"]["coreai"]) == set(get_spec(model).family.bench_parts)
    for part in manifest["files"]["coreai"]:
        assert all(w["psnr_db"] >= 60 for w in report[part]["worst"].values()), (part, report[part]["worst"])


def test_bench_on_core_ai_needs_macos_27_and_says_so_in_one_line(capsys, tmp_path):
    """`bench --device m1 --target coreai` is real code for macOS 27's runtime; elsewhere it refuses."""
    from samexport.platforms import is_apple_silicon

    if is_apple_silicon():
        pytest.skip("on a Mac the Core AI bench runs")
    result = invoke(capsys, "bench", "--device", "m1", "--target", "coreai", "--models-dir", str(tmp_path))
    assert "--device m1 --target coreai needs macOS 27 on Apple silicon" in one_line_error(result)
    assert not any(tmp_path.iterdir())
