"""Issue 26: what a new user meets on README's route and when files of theirs are in the way. The toy
family (tests/toy_family.py) keeps each conversion to seconds."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from helpers import invoke, one_line_error
from samexport.bench.orchestrate import Bench, BenchOptions
from samexport.errors import UsageError
from samexport.export.samples import validation_image


@pytest.fixture()
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(validation_image()).save(path)
    return path


def test_quick_start_then_onnx_then_segment_need_no_force(toy, tmp_path, photo, capsys):
    """Item 2: Core ML first (the quick start), then ONNX beside it, then segment on onnxruntime: no run
    needs --force, and the manifest records both targets."""
    models = tmp_path / "models"
    for target in ("coreml", "onnx"):
        result = invoke(
            capsys, "convert", "--encoder", "toy3", "--target", target, "--output-dir", str(models)
        )
        assert result.returncode == 0, result.stderr
    manifest = json.loads((models / "ToyThree.export.json").read_text())
    assert {"coreml_encoder", "onnx_encoder"} <= set(manifest["files"])
    out = tmp_path / "mask.png"
    args = ["segment", str(photo), "--encoder", "toy3", "--point", "320,240", "--output", str(out)]
    result = invoke(capsys, *args, "--backend", "onnx", "--models-dir", str(models))
    assert result.returncode == 0, result.stderr
    assert out.exists()


def test_segment_converts_beside_another_target_and_passes_force_on(toy, tmp_path, photo, capsys):
    """Item 2: segment --backend onnx converts beside a Core ML export without --force; its --force is
    passed on to the conversion (replacing an ONNX set left half-written)."""
    models = tmp_path / "models"
    assert (
        invoke(
            capsys, "convert", "--encoder", "toy3", "--target", "coreml", "--output-dir", str(models)
        ).returncode
        == 0
    )
    args = ["segment", str(photo), "--encoder", "toy3", "--point", "320,240", "--backend", "onnx"]
    args += ["--models-dir", str(models), "--output", str(tmp_path / "a.png")]
    assert invoke(capsys, *args).returncode == 0
    (models / "ToyThreeDecoder.onnx").unlink()
    again = args[:-1] + [str(tmp_path / "b.png")]
    assert "ToyThreeEncoder.onnx already exists; pass --force" in one_line_error(invoke(capsys, *again))
    assert invoke(capsys, *again, "--force").returncode == 0
    assert (models / "ToyThreeDecoder.onnx").exists()


def test_segment_on_core_ml_runs_the_evaluator_off_macos(toy, tmp_path, photo, capsys):
    """Item 3: off macOS `segment --backend coreml` ran into a hint naming an option segment lacks; it runs
    the packages' ML programs in NumPy, as validate does, and says so."""
    import sys

    if sys.platform == "darwin":
        pytest.skip("on a Mac Core ML itself predicts")
    out = tmp_path / "mask.png"
    args = ["segment", str(photo), "--encoder", "toy3", "--point", "320,240", "--backend", "coreml"]
    result = invoke(
        capsys,
        *args,
        "--models-dir",
        str(tmp_path / "models"),
        "--output",
        str(out),
        "--json",
        str(tmp_path / "mask.json"),
    )
    assert result.returncode == 0, result.stderr
    assert "running the packages' saved ML programs in NumPy" in result.stdout + result.stderr
    assert json.loads((tmp_path / "mask.json").read_text())["backend"] == "coreml (NumPy evaluation)"
    assert "--method" not in result.stdout + result.stderr


def test_bench_never_replaces_a_partial_export(toy, tmp_path, capsys):
    """Item 6: with one file of a set missing bench converted with force, rewriting the user's encoder from
    other weights. A partial set is an error naming the fix, and nothing is touched."""
    models = tmp_path / "models"
    assert (
        invoke(
            capsys, "convert", "--encoder", "toy3", "--target", "onnx", "--output-dir", str(models)
        ).returncode
        == 0
    )
    (models / "ToyThreeDecoder.onnx").unlink()
    before = {p.name: p.read_bytes() for p in models.iterdir() if p.is_file()}
    bench = Bench(BenchOptions(encoders=("toy3",), models_dir=models), quiet=True)
    with pytest.raises(
        UsageError, match="ToyThreeDecoder.onnx is missing beside ToyThreeEncoder.onnx.*--force"
    ):
        bench.artifacts("toy3")
    assert {p.name: p.read_bytes() for p in models.iterdir() if p.is_file()} == before
    fresh = Bench(BenchOptions(encoders=("toy3",), models_dir=tmp_path / "empty"), quiet=True)
    assert fresh.artifacts("toy3")["decoder"].exists(), "no export at all: bench converts one"
