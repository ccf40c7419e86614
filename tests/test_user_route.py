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


def test_reports_never_replace_a_users_file_without_force(tmp_path, capsys):
    """Item 7: `bench --output`, `bench --plot` and `validate --json` replaced existing files silently;
    without --force they are refused up front (exit 2), with --force replaced. The first write of a report
    never replaces a file that appeared while the command worked."""
    from samexport.fsutil import OutputFiles

    notes = tmp_path / "notes.json"
    notes.write_text("my notes")
    results = tmp_path / "cpu.json"
    results.write_text(json.dumps({"schema": "samexport.bench/1", "rows": [], "device": {"label": "cpu"}}))
    for args in (
        ["bench", "--from", str(results), "--format", "json", "--output", str(notes)],
        ["bench", "--from", str(results), "--plot", str(notes)],
        ["validate", str(tmp_path / "x.mlpackage"), "--json", str(notes)],
    ):
        assert "notes.json exists; pass --force" in one_line_error(invoke(capsys, *args)), args
    assert notes.read_text() == "my notes"
    files = OutputFiles([tmp_path / "late.json", tmp_path / "b.json"])
    files.check()
    (tmp_path / "late.json").write_text("appeared meanwhile")
    with pytest.raises(UsageError, match="late.json appeared while this run was working"):
        files.write(
            {tmp_path / "b.json": lambda f: f.write("b"), tmp_path / "late.json": lambda f: f.write("x")}
        )
    assert (tmp_path / "late.json").read_text() == "appeared meanwhile"
    assert not (tmp_path / "b.json").exists(), "all or nothing: the set's other file is removed again"


def test_report_write_failures_are_one_line(tmp_path, capsys):
    """Item 7: `bench --output /proc/nope/x.json` gave a raw FileNotFoundError."""
    results = tmp_path / "cpu.json"
    results.write_text(json.dumps({"schema": "samexport.bench/1", "rows": [], "device": {"label": "cpu"}}))
    out = invoke(capsys, "bench", "--from", str(results), "--output", "/proc/nope/x.json")
    assert "does not exist" in one_line_error(out)


def test_outputs_keep_the_mode_a_plain_write_gives(tmp_path):
    """Item 12: files written through mkstemp stayed 0600; an output gets 0666 less the umask, and a
    replaced file keeps its own mode."""
    import os
    import stat

    from samexport.fsutil import OutputFiles, atomic_write_text

    mask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "new.json", "{}")
        assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o644
        kept = tmp_path / "kept.json"
        kept.write_text("{}")
        kept.chmod(0o640)
        atomic_write_text(kept, "{}\n")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o640
        files = OutputFiles([tmp_path / "a.png"])
        files.check()
        files.write({tmp_path / "a.png": lambda f: f.write(b"png")}, binary=[tmp_path / "a.png"])
        assert stat.S_IMODE((tmp_path / "a.png").stat().st_mode) == 0o644
    finally:
        os.umask(mask)


def test_validate_writes_its_verdict_only_into_the_manifest_it_read(toy, tmp_path, monkeypatch):
    """Item 8: a `convert --force` that replaces the export while validate runs must not receive the old
    export's verdict."""
    from samexport.export import validate as validate_module
    from samexport.export.convert import convert
    from samexport.export.options import ConvertOptions

    out = tmp_path / "models"
    convert(ConvertOptions(encoder="toy3", target="coreml", output_dir=out), quiet=True)
    manifest = out / "ToyThree.export.json"
    real = validate_module.export_layout

    def replaced_meanwhile(name):
        text = manifest.read_text()
        manifest.write_text(text.replace('"created_utc"', '"created_utc_by_another_run"', 1))
        return real(name)

    monkeypatch.setattr(validate_module, "export_layout", replaced_meanwhile)
    before = manifest.read_text()
    with pytest.raises(UsageError, match="changed while validate ran .* were not written"):
        validate_module.validate([manifest], method="numpy")
    assert manifest.read_text() == before.replace('"created_utc"', '"created_utc_by_another_run"', 1)


@pytest.mark.parametrize("box", ["nan,10,100,100", "0,0,inf,100", "10,10,5,100"])
def test_non_finite_or_empty_boxes_are_refused(box, tmp_path, capsys, photo):
    """Item 11: `--box nan,10,100,100` ran to rc 0 and wrote JSON with a bare NaN."""
    out = invoke(
        capsys,
        "segment",
        str(photo),
        "--encoder",
        "tinyvit",
        "--box",
        box,
        "--output",
        str(tmp_path / "o.png"),
    )
    assert "--box takes X0,Y0,X1,Y1" in one_line_error(out)
    assert not (tmp_path / "o.png").exists()
