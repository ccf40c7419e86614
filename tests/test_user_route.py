"""Issue 26: what a new user meets on README's route and when files of theirs are in the way. The toy
family (tests/toy_family.py) keeps each conversion to seconds."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from helpers import invoke, one_line_error
from samexport.bench.orchestrate import Bench, BenchOptions
from samexport.errors import UsageError
from samexport.samples import validation_image


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
    assert {"encoder", "decoder"} <= set(manifest["files"]["coreml"]) & set(manifest["files"]["onnx"])
    out = tmp_path / "mask.png"
    args = ["segment", str(photo), "--encoder", "toy3", "--point", "320,240", "--output", str(out)]
    result = invoke(capsys, *args, "--backend", "onnx", "--models-dir", str(models))
    assert result.returncode == 0, result.stderr
    assert out.exists()


def test_segment_converts_beside_another_target_and_never_replaces_an_export(toy, tmp_path, photo, capsys):
    """segment --backend onnx converts beside a Core ML export without --force; an ONNX set with a part
    missing is refused, with or without --force (which is for segment's own picture and JSON: it once
    replaced a checkpoint-made encoder with one converted from the fixture weights)."""
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
    encoder = (models / "ToyThreeEncoder.onnx").read_bytes()
    again = args[:-1] + [str(tmp_path / "b.png")]
    for extra in ((), ("--force",)):
        error = one_line_error(invoke(capsys, *again, *extra))
        assert "lists an incomplete ONNX export (decoder (ToyThreeDecoder.onnx) missing)" in error
        assert "samexport convert --encoder toy3 --target onnx --force" in error
    assert (models / "ToyThreeEncoder.onnx").read_bytes() == encoder
    assert not (models / "ToyThreeDecoder.onnx").exists() and not (tmp_path / "b.png").exists()


def test_segment_runs_the_export_that_is_there_whatever_its_precision(toy, tmp_path, photo, capsys):
    """An fp32 LiteRT export in --models-dir is the one segment --backend litert runs: no fp16 conversion
    beside it."""
    models = tmp_path / "models"
    convert = ["convert", "--encoder", "toy3", "--target", "litert", "--precision", "FP32"]
    assert invoke(capsys, *convert, "--output-dir", str(models)).returncode == 0
    before = sorted(p.name for p in models.iterdir())
    args = ["segment", str(photo), "--encoder", "toy3", "--point", "320,240", "--backend", "litert"]
    result = invoke(capsys, *args, "--models-dir", str(models), "--output", str(tmp_path / "a.png"))
    assert result.returncode == 0, result.stderr
    assert "converting it first" not in result.stdout + result.stderr
    assert (
        sorted(p.name for p in models.iterdir())
        == before
        == [
            "ToyThreeDecoderFP32.tflite",
            "ToyThreeEncoderFP32.tflite",
            "ToyThreeFP32.export.json",
        ]
    )


def test_segment_on_core_ml_runs_the_evaluator_off_macos(toy, tmp_path, photo, capsys):
    """Item 3: off macOS `segment --backend coreml` ran into a hint naming an option segment lacks; it runs
    the packages' ML programs in NumPy, as validate does, and says so."""
    import sys

    if sys.platform == "darwin":
        pytest.skip("on a Mac Core ML itself predicts")
    from samexport.export.convert import convert
    from samexport.export.options import EVERYTHING_BATCH, ConvertOptions

    # the export segment would convert (its checks run in the conversion tests), without them: seconds
    models = tmp_path / "models"
    convert(
        ConvertOptions("toy3", target="coreml", output_dir=models, batch=EVERYTHING_BATCH, validate=False),
        True,
    )
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
    real = validate_module.check_export

    def replaced_meanwhile(*args):
        text = manifest.read_text()
        manifest.write_text(text.replace('"created_utc"', '"created_utc_by_another_run"', 1))
        return real(*args)

    monkeypatch.setattr(validate_module, "check_export", replaced_meanwhile)
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


def test_checkpoints_with_non_float_weights_are_refused(tmp_path):
    """Item 9: integer, bool or uint8 weights loaded and gave NaN or empty masks with rc 0."""
    import torch

    from samexport import build_model
    from samexport.checkpoint import random_state_dict
    from samexport.errors import CheckpointError
    from samexport.families.registry import get_spec

    state = random_state_dict(get_spec("tinyvit").build_meta().to_empty(device="cpu"))
    first = next(k for k, v in state.items() if v.is_floating_point())
    for dtype in (torch.uint8, torch.int32, torch.bool):
        bad = {**state, first: state[first].to(dtype)}
        path = tmp_path / f"{dtype}.pt"
        torch.save(bad, path)
        with pytest.raises(CheckpointError, match=f"weights are not floating point .*{str(dtype)[6:]}"):
            build_model("tinyvit", checkpoint=path)


def test_a_safetensors_header_is_checked_before_any_tensor_is_read(tmp_path, monkeypatch):
    """Item 10: a small sparse safetensors file declaring 4 GB was materialised (10 GB peak) before the
    layout check refused it; the header alone now decides."""
    import struct

    from samexport import checkpoint
    from samexport.errors import CheckpointError

    header = json.dumps(
        {"huge": {"dtype": "F32", "shape": [1024, 1024, 1024], "data_offsets": [0, 4 * 1024**3]}}
    )
    path = tmp_path / "huge.safetensors"
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header.encode())
        f.truncate(8 + len(header) + 4 * 1024**3)  # sparse: 4 GB declared, nothing on disk

    def never(*args):
        raise AssertionError("tensors were read before the layout check")

    monkeypatch.setattr(checkpoint, "_read_safetensors", never)
    with pytest.raises(CheckpointError, match="does not match tinyvit.*1 unexpected \\(huge\\)"):
        checkpoint.read_checkpoint(path, checkpoint.get_spec("tinyvit"))


@pytest.mark.parametrize(
    "size,message",
    [((12000, 4500), "more than the 50 MP"), ((3000, 1), "short side would be under one pixel")],
)
def test_images_beyond_the_pixel_budget_are_refused_from_the_header(size, message, tmp_path):
    """Item 10/11: a 445 KB 12000x12000 PNG peaked at 8 GB, a 30000^2 one gave DecompressionBombError, a
    1x3000 one a ValueError; refused in one line from the header."""
    from samexport.errors import InputError
    from samexport.segment import load_image

    path = tmp_path / "big.png"
    Image.new("L", size).save(path)
    with pytest.raises(InputError, match=message):
        load_image(path)


def test_16_bit_grayscale_is_scaled_not_saturated(tmp_path):
    """Item 11: 16-bit PNGs saturated to white; RGBA: the alpha channel is dropped and said so."""
    import numpy as np

    from samexport.segment import load_image

    ramp = (np.arange(256, dtype=np.uint16) * 257)[None].repeat(4, axis=0)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    image = load_image(tmp_path / "g16.png")
    assert image.shape == (4, 256, 3) and image[0, :, 0].tolist() == list(range(256))
    Image.new("RGBA", (8, 8), (10, 20, 30, 0)).save(tmp_path / "a.png")
    notes = []
    assert load_image(tmp_path / "a.png", notes)[0, 0].tolist() == [10, 20, 30]
    assert "alpha channel; it is dropped" in notes[0]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--everything", "--points-per-side", "0"], "--points-per-side takes 1 to 128, got 0"),
        (["--everything", "--points-per-side", "100000"], "--points-per-side takes 1 to 128"),
        (["--everything", "--crop-n-layers", "-1"], "--crop-n-layers takes 0 to 3"),
        (["--everything", "--crop-n-layers", "50"], "--crop-n-layers takes 0 to 3"),
        (["--point", "5,5", "--pred-iou-thresh", "0.5"], "--pred-iou-thresh is an everything-mode option"),
        (["--everything", "--stability-score-thresh", "5"], "--stability-score-thresh takes 0 to 1"),
        (["--everything", "--pred-iou-thresh", "-0.1"], "--pred-iou-thresh takes 0 to 1"),
    ],
)
def test_everything_options_out_of_range_or_unused_are_refused(args, message, tmp_path, capsys, photo):
    """Item 11 and 15: ZeroDivisionError, a 74.5 GiB MemoryError, an endless run; options silently
    ignored."""
    out = invoke(
        capsys, "segment", str(photo), "--encoder", "tinyvit", *args, "--output", str(tmp_path / "o.png")
    )
    assert message in one_line_error(out)


def test_rapsam_refuses_the_click_grid_options_it_would_ignore(tmp_path, capsys, photo):
    """Item 15: RAP-SAM --everything --pred-iou-thresh 0 ignored the threshold (the legend still said 0.8)."""
    args = ["segment", str(photo), "--encoder", "rapsam_r50", "--everything", "--pred-iou-thresh", "0"]
    error = one_line_error(invoke(capsys, *args, "--output", str(tmp_path / "o.png")))
    assert "--pred-iou-thresh is an option of the click-grid everything mode" in error and "panoptic" in error


def test_efficientsam_refuses_a_seventh_token(tmp_path, capsys, photo):
    """Item 11: EfficientSAM dropped a 7th click silently."""
    clicks = [arg for i in range(7) for arg in ("--point", f"{10 + i},10")]
    args = [
        "segment",
        str(photo),
        "--encoder",
        "efficientsam_ti",
        *clicks,
        "--output",
        str(tmp_path / "o.png"),
    ]
    assert "at most 6 prompt tokens" in one_line_error(invoke(capsys, *args))


def test_bad_validate_metadata_and_manifests_are_one_line(toy, tmp_path, capsys):
    """Item 11: validate passed a package whose contract is not JSON, whose token counts are nonsense, or
    a manifest of format samexport.export/99; deeply nested JSON raised RecursionError."""
    from samexport.export.validate import check_metadata

    good = {"com.samexport.model": "toy3", "com.samexport.part": "decoder"}
    check_metadata("ok.mlpackage", {**good, "com.samexport.token_counts": "[2, 3]"})
    for key, value, message in (
        ("com.samexport.contract", "{not json", "contract metadata is not JSON"),
        ("com.samexport.token_counts", "[100000]", r"token_counts metadata is '\[100000\]'"),
        ("com.samexport.batch_sizes", "[0]", "batch_sizes metadata"),
        ("com.samexport.part", "tail", "has part 'tail'"),
    ):
        with pytest.raises(UsageError, match=message):
            check_metadata("bad.mlpackage", {**good, key: value})
    manifest = tmp_path / "M.export.json"
    manifest.write_text(json.dumps({"format": "samexport.export/99", "files": {}}))
    assert "format 'samexport.export/99'" in one_line_error(invoke(capsys, "validate", str(manifest)))
    manifest.write_text("[" * 100000 + "]" * 100000)
    assert "is not an export manifest" in one_line_error(invoke(capsys, "validate", str(manifest)))


def test_bench_inputs_that_are_not_numbers_are_one_line(tmp_path, capsys):
    """Item 11: `--memory-limit 1e30G` gave rc 1; `bench --from` with a string median_ms a TypeError."""
    assert "more memory than any machine has" in one_line_error(
        invoke(capsys, "bench", "--memory-limit", "1e30G", "--encoder", "tinyvit")
    )
    result = {
        "schema": "samexport.bench/1",
        "device": {"label": "cpu"},
        "options": {"target": "onnx"},
        "rows": [{"model": "tinyvit", "part": "encoder", "status": "ok", "stats": {"median_ms": "fast"}}],
    }
    path = tmp_path / "r.json"
    path.write_text(json.dumps(result))
    assert "incomplete bench result (no numbers in the row of tinyvit encoder)" in one_line_error(
        invoke(capsys, "bench", "--from", str(path))
    )
    path.write_text("[" * 100000 + "]" * 100000)
    assert "cannot read bench results" in one_line_error(invoke(capsys, "bench", "--from", str(path)))


def test_segment_json_has_one_schema_for_every_family(tmp_path, capsys, photo):
    """Item 16: timing keys setup/encoder/decoder vs build/encode/decode, mask_token missing for RAP-SAM."""
    from samexport.segment import RECORD_KEYS

    documents = {}
    for encoder in ("tinyvit", "rapsam_r50"):
        doc = tmp_path / f"{encoder}.json"
        args = [
            "segment",
            str(photo),
            "--encoder",
            encoder,
            "--point",
            "320,240",
            "--output",
            str(tmp_path / "o.png"),
        ]
        assert invoke(capsys, *args, "--json", str(doc), "--force").returncode == 0
        documents[encoder] = json.loads(doc.read_text())
    for document in documents.values():
        assert document["format"] == "samexport.segment/2"
        assert {"build", "encode", "decode", "draw"} <= set(document["timings_s"])
        assert all(tuple(m) == RECORD_KEYS for m in document["masks"])
    assert documents["rapsam_r50"]["masks"][0]["mask_token"] == 0


@pytest.mark.parametrize("width", [769, 1200, 2241])
def test_the_legend_wraps_instead_of_being_cut_off(width):
    """Item 14: on photos 769-2241 px wide the legend ran past the right edge."""
    import numpy as np

    from samexport.overlay import draw_overlay

    image = np.full((int(width * 0.75), width, 3), 90, np.uint8)
    mask = np.zeros(image.shape[:2], bool)
    mask[10:50, 10:50] = True
    title = (
        "tinyvit on onnx, everything: 1024 candidates -> 300 IoU -> 120 stability -> 118 crop edge -> " * 2
    )
    picture = np.asarray(
        draw_overlay(image, [mask], ["#1  IoU 0.931  stability 0.972  area 1600 px"], title=title)
    )
    legend = picture[image.shape[0] :]
    text = np.argwhere((legend > 200).all(axis=-1))  # the legend's light text on its dark ground
    assert text[:, 1].max() < width - 4, "text reaches the right edge"
    assert legend.shape[0] > 4 * 18, "the long title took several lines"


def test_each_prompt_has_its_masks_colour():
    """Item 14: several boxes were drawn in one colour and prompts were unnumbered."""
    import numpy as np

    from samexport.overlay import draw_overlay, palette

    image = np.zeros((300, 400, 3), np.uint8)
    masks = [np.zeros((300, 400), bool) for _ in range(3)]
    boxes = [(20, 20, 120, 120), (150, 20, 250, 120), (20, 160, 120, 260)]
    picture = np.asarray(draw_overlay(image, masks, ["a", "b", "c"], boxes=boxes, box_masks=[0, 1, 2]))
    colours = palette(3)
    for (_, y0, x1, y1), colour in zip(boxes, colours):
        assert tuple(picture[(y0 + y1) // 2, x1]) == colour  # the right edge, away from the number plate


def test_onnx_export_prints_no_raw_torch_warnings(tmp_path):
    """Item 17: torch's "Constant folding - Only steps=1 ..." warnings reached the user during ONNX export."""
    from helpers import run_cli

    result = run_cli(
        "convert", "--encoder", "tinyvit", "--target", "onnx", "--output-dir", str(tmp_path), "--no-validate"
    )
    assert result.returncode == 0, result.stderr
    assert "Constant folding" not in result.stderr and "UserWarning" not in result.stderr


def test_long_runs_show_rate_and_time_left(capsys, monkeypatch):
    """Item 13: everything mode on torch ran 14.6 min with one progress line and no estimate. The bar shows
    the rate and the time left; where stderr is no terminal (a log) plain lines say the same."""
    from samexport import console

    line = console.progress_line("everything mode", 40, 1040, 20.0, "batches")
    assert line.rate == "2.0 batches/s"
    assert line.text == "  everything mode: 40/1040 batches, 2.0/s, about 500 s left"
    clock = iter([0.0, 1.0, 20.0, 40.0, 41.0, 41.5])
    monkeypatch.setattr(console.time, "perf_counter", lambda: next(clock))
    progress = console.Progress()
    with progress.bar("everything mode") as advance:
        advance(1, 4)  # at 1 s: the first line waits for LOG_EVERY_S
        advance(2, 4)  # at 20 s
        advance(4, 4)  # at 40 s: the last one always
    err = capsys.readouterr().err
    assert "everything mode: 2/4 batches, 0.1/s, about 20 s left" in err
    assert "everything mode: 4/4 batches" in err and "1/4 batches" not in err


def test_bench_says_where_the_plot_went(tmp_path, capsys):
    """Item 17: bench wrote --plot without saying where."""
    from helpers import fake_result
    from samexport.bench import report

    results = tmp_path / "cpu.json"
    results.write_text(report.to_json(fake_result()))
    out = invoke(capsys, "bench", "--from", str(results), "--plot", str(tmp_path / "p.png"))
    assert out.returncode == 0, out.stderr
    assert f"plot: {tmp_path / 'p.png'}" in out.stdout and (tmp_path / "p.png").exists()
