"""What `convert` does to the output folder: nothing lost, nothing half-written, nothing misleading,
when runs race, are killed, fail, or replace earlier files. Most use the toy family (seconds a run)."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from helpers import invoke, one_line_error, start_convert_in_background
from samexport.errors import UsageError
from samexport.export import onnx_export
from samexport.export.convert import convert
from samexport.export.options import ConvertOptions
from samexport.export.outputs import LOCK_MARK, LOCK_NAME, OutputFolder
from samexport.families import sam_style

NAMES = ["ToyThree.export.json", "ToyThreeDecoder.onnx", "ToyThreeEncoder.onnx"]


def toy_onnx(out, **kwargs):
    """The toy model's ONNX export; file handling asserts on files, not numbers: no validation by default."""
    kwargs.setdefault("validate", False)
    return convert(ConvertOptions(encoder="toy3", target="onnx", output_dir=out, **kwargs), quiet=True)


def snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_a_run_that_loses_a_race_without_force_replaces_nothing(toy, tmp_path, monkeypatch):
    """Item 1: the other run's files appear while this one works; the switch re-checks under the lock."""
    out = tmp_path / "out"
    out.mkdir()
    real = sam_style.make_reference

    def other_run_finishes_first(model):
        for name in NAMES:
            (out / name).write_text(f"the winner's {name}")
        return real(model)

    monkeypatch.setattr(sam_style, "make_reference", other_run_finishes_first)
    with pytest.raises(UsageError, match="appeared while this run was working .*nothing was replaced"):
        toy_onnx(out)
    assert snapshot(out) == {name: f"the winner's {name}".encode() for name in NAMES}
    assert not list(out.glob(".samexport-*"))


TOY_CLI = (
    "import sys; sys.path.insert(0, {tests!r}); from toy_family import toy_registered; "
    "from samexport.cli import run\n"
    "with toy_registered():\n    sys.exit(run(sys.argv[1:]))"
)


def test_two_processes_race_one_wins_and_one_fails(tmp_path):
    """Item 1 with two real processes started together, neither with --force."""
    out = tmp_path / "out"
    code = TOY_CLI.format(tests=str(Path(__file__).parent))
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                code,
                "convert",
                "--encoder",
                "toy3",
                "--target",
                "onnx",
                "--output-dir",
                str(out),
                "--points",
                points,
                "--quiet",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for points in ("1", "1,2")
    ]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in results) == [0, 2], results
    (loser,) = [err for code, err in results if code == 2]
    assert "already exists" in loser or "appeared while this run was working" in loser
    winner = [points for (code, _), points in zip(results, ([1], [1, 2])) if code == 0][0]
    assert json.loads((out / "ToyThree.export.json").read_text())["options"]["points"] == winner
    assert not list(out.glob(".samexport-*"))


def test_manifest_keeps_the_record_of_targets_it_did_not_rewrite(toy, tmp_path, capsys):
    """Item 2: Core ML, then ONNX beside it, without --force (issue 26 item 2: adding a target is not a
    replacement): both stay recorded, and validate works. Replacing a target's files still needs --force."""
    from samexport.cli import run

    out = tmp_path / "out"
    convert(ConvertOptions(encoder="toy3", target="coreml", output_dir=out), quiet=True)
    first = json.loads((out / "ToyThree.export.json").read_text())
    manifest = toy_onnx(out)
    assert {t: set(parts) for t, parts in manifest["files"].items()} == {
        "coreml": {"encoder", "decoder"},
        "onnx": {"encoder", "decoder"},
    }
    assert manifest["validation"]["coreml"] == first["validation"]["coreml"]
    assert manifest["coreml"] == first["coreml"]
    assert manifest["earlier_targets"]["coreml"]["created_utc"] == first["created_utc"]
    assert json.loads((out / "ToyThree.export.json").read_text()) == json.loads(json.dumps(manifest))
    assert run(["validate", str(out / "ToyThree.export.json"), "--method", "numpy"]) == 0, (
        capsys.readouterr().err
    )
    with pytest.raises(UsageError, match="ToyThreeEncoder.onnx already exists; pass --force"):
        toy_onnx(out)


def test_the_switch_never_shows_an_old_manifest_beside_new_files(toy, tmp_path, monkeypatch):
    """Item 3: at every step of a --force replacement, the folder has no manifest until the last step."""
    out = tmp_path / "out"
    toy_onnx(out)
    old = snapshot(out)
    seen = []
    real = OutputFolder.swap_in

    def watch(self, name):
        seen.append((name, (out / "ToyThree.export.json").exists()))
        real(self, name)

    monkeypatch.setattr(OutputFolder, "swap_in", watch)
    toy_onnx(out, force=True, points=(1, 2))
    assert [name for name, _ in seen][-1] == "ToyThree.export.json"
    assert not any(manifest_present for _, manifest_present in seen)
    assert snapshot(out) != old


def test_a_switch_that_fails_puts_the_earlier_files_back(toy, tmp_path, monkeypatch):
    out = tmp_path / "out"
    toy_onnx(out)
    old = snapshot(out)
    real = OutputFolder.swap_in

    def fail_on_the_decoder(self, name):
        if "Decoder" in name:
            raise OSError(errno.EIO, "simulated I/O error")
        real(self, name)

    monkeypatch.setattr(OutputFolder, "swap_in", fail_on_the_decoder)
    with pytest.raises(OSError, match="simulated"):
        toy_onnx(out, force=True, points=(1, 2))
    assert snapshot(out) == old
    assert not list(out.glob(".samexport-*"))


def test_coremltools_temporary_files_live_in_the_work_folder(toy, tmp_path, monkeypatch):
    """Item 4: a killed run cannot leave coremltools' tmp*.mlpackage folders in $TMPDIR."""
    from samexport.export import coreml_export

    out, seen = tmp_path / "out", []
    real = coreml_export.convert

    def record(*args, **kwargs):
        seen.append(tempfile.gettempdir())
        return real(*args, **kwargs)

    monkeypatch.setattr(coreml_export, "convert", record)
    convert(ConvertOptions(encoder="toy3", target="coreml", output_dir=out, validate=False), quiet=True)
    assert seen and all(path.startswith(str(out / ".samexport-")) for path in seen)
    assert tempfile.gettempdir() != seen[0]  # restored


def test_a_cache_folder_torch_latches_on_during_a_run_does_not_bring_the_work_folder_back(
    tmp_path, monkeypatch
):
    """torch's inductor pins its cache folder, made under the temporary folder of its first use, in
    TORCHINDUCTOR_CACHE_DIR; a later use in the same process must not make the removed work folder again."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "system-tmp"))
    (tmp_path / "system-tmp").mkdir()
    out = tmp_path / "out"
    folder = OutputFolder(out, "X.export.json", [], force=False)
    work = folder.open()
    assert cache_dir().startswith(str(work))  # latched onto the work folder while the run lives
    folder.close(succeeded=True)
    assert not cache_dir().startswith(str(work))
    assert not list(out.glob(".samexport-*"))


def test_a_killed_runs_work_folder_is_removed_by_the_next_run(toy, tmp_path):
    """Item 4: SIGKILL leaves the work folder; the next run removes it, but never a live run's."""
    out = tmp_path / "out"
    proc = start_convert_in_background(out)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    (dead,) = list(out.glob(".samexport-*"))
    live = out / ".samexport-live"
    live.mkdir()
    held = os.open(live / LOCK_NAME, os.O_CREAT | os.O_RDWR)
    os.write(held, LOCK_MARK)
    fcntl.flock(held, fcntl.LOCK_EX)
    # issue 26 item 12: a user's own folder of that name, even with a free `.lock` in it, is not a leftover
    mine = out / ".samexport-mine"
    mine.mkdir()
    (mine / ".lock").write_text("my notes")
    (mine / LOCK_NAME).write_text("not written by samexport")
    try:
        toy_onnx(out)
    finally:
        os.close(held)
    assert not dead.exists() and live.exists()
    assert (mine / ".lock").read_text() == "my notes"


def test_a_failed_run_removes_the_folders_it_created(toy, tmp_path, monkeypatch):
    """Item 5: README says a failed run leaves nothing, the output folder it created included."""

    def broken(*args, **kwargs):
        raise UsageError("simulated failure")

    monkeypatch.setattr(onnx_export, "simplify", broken)
    with pytest.raises(UsageError, match="simulated"):
        toy_onnx(tmp_path / "a" / "b" / "c")
    assert list(tmp_path.iterdir()) == []


def test_disk_full_is_one_line_naming_the_folder_and_the_space(toy, tmp_path, monkeypatch, capsys):
    """Item 13."""

    def full(source, target):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(onnx_export, "copy_model", full)
    out = tmp_path / "out"
    message = one_line_error(
        invoke(capsys, "convert", "--encoder", "toy3", "--target", "onnx", "--output-dir", str(out))
    )
    assert f"no space left on the disk holding {out}" in message and "need about" in message
    assert not out.exists()


@pytest.mark.parametrize("points", ["99999999999999999999", "1000", "65", "0"])
def test_points_are_bounded(tmp_path, capsys, points):
    """Item 14: rejected before any work with the bound stated."""
    result = invoke(
        capsys, "convert", "--encoder", "tinyvit", "--points", points, "--output-dir", str(tmp_path / "o")
    )
    assert "from 1 to 64" in one_line_error(result)
    assert not (tmp_path / "o").exists()


def test_min_target_is_case_insensitive():
    """Item 15."""
    assert ConvertOptions(encoder="tinyvit", min_target="ios17").min_target == "iOS17"


def test_unwritable_output_dir_is_found_before_the_model_is_built(tmp_path, monkeypatch, capsys):
    """Item 15: checked without creating anything, before the (seconds-long) model build."""
    from samexport.export import convert as module

    def never(*args, **kwargs):
        raise AssertionError("the model was built before the output folder was checked")

    monkeypatch.setattr(module, "build_model_noting", never)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    message = one_line_error(
        invoke(capsys, "convert", "--encoder", "tinyvit", "--output-dir", str(blocker / "o"))
    )
    assert "cannot write to --output-dir" in message and "is a file" in message


@pytest.mark.parametrize(
    "content,message",
    [
        ("[1, 2]", "is not an export manifest"),
        ('{"files": {"coreml_encoder": "X.mlpackage"}}', "is not an export manifest"),
        ('{"files": {"coreml_encoder": {"path": "Gone.mlpackage"}}}', "Gone.mlpackage is missing"),
        ('{"files": {"onnx_encoder": {"path": "E.onnx"}}}', "E.onnx is missing"),
        (
            '{"format": "samexport.export/2", "files": {"tflite": {"encoder": {"path": "E.tflite"}}}}',
            "lists no files of a target this samexport knows",
        ),
    ],
    ids=["list", "files-not-records", "packages-deleted", "onnx-deleted", "unknown-target"],
)
def test_malformed_manifests_are_one_line_exit_2(tmp_path, capsys, content, message):
    """Issue 12 item 12: a manifest of the wrong shape, or whose packages are gone, is a usage error."""
    manifest = tmp_path / "M.export.json"
    manifest.write_text(content)
    assert message in one_line_error(invoke(capsys, "validate", str(manifest)))


def test_too_little_free_space_is_refused_before_any_work(toy, tmp_path, monkeypatch, capsys):
    """Apple's Core AI writer aborts the process on a full disk (LLVM ERROR, exit 1, folders left behind):
    a disk with less free space than the exports need is refused up front, for every target."""
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 10**5, 10**5))
    out = tmp_path / "out"
    message = one_line_error(
        invoke(capsys, "convert", "--encoder", "toy3", "--target", "coreai", "--output-dir", str(out))
    )
    assert f"0 MB free on the disk holding {out}; these exports need about" in message
    assert not out.exists()


def test_disk_full_while_saving_a_package_is_the_same_one_line(toy, tmp_path, monkeypatch, capsys):
    """Item 13, Core ML: coremltools reports a full disk as a shutil.Error holding a list of failed copies."""
    import shutil

    from samexport.export import coreml_export

    def full(*args, **kwargs):
        raise shutil.Error([("/tmp/x/weight.bin", "/out/weight.bin", "[Errno 28] No space left on device")])

    monkeypatch.setattr(coreml_export, "set_metadata", full)
    out = tmp_path / "out"
    message = one_line_error(
        invoke(capsys, "convert", "--encoder", "toy3", "--output-dir", str(out), "--quiet")
    )
    assert message.startswith(f"error: no space left on the disk holding {out}") and len(message) < 400
    assert not out.exists()


def test_a_full_disk_reported_as_a_runtime_error_is_the_same_one_line(toy, tmp_path, monkeypatch, capsys):
    """Issue 26 item 12: a full disk while Core ML writes gave rc 1; any error that says the disk is full is
    the one-line exit 2, with a space estimate that covers the temporary copies."""
    from samexport.export import coreml_export

    def full(*args, **kwargs):
        raise RuntimeError("Unable to write weight blob: No space left on device")

    monkeypatch.setattr(coreml_export, "set_metadata", full)
    out = tmp_path / "out"
    message = one_line_error(
        invoke(capsys, "convert", "--encoder", "toy3", "--output-dir", str(out), "--quiet")
    )
    assert message.startswith(f"error: no space left on the disk holding {out}")
    assert "free while they are written" in message
    assert not out.exists()


def test_a_full_disk_for_a_report_is_one_line(tmp_path):
    """Issue 26 item 12: segment, bench and validate reports on a full disk gave rc 1."""
    import errno as errnos

    from samexport.fsutil import OutputFiles

    files = OutputFiles([tmp_path / "r.json"])
    files.check()

    def full(f):
        raise OSError(errnos.ENOSPC, "No space left on device")

    with pytest.raises(UsageError, match="cannot write .*r.json \\(no space left on the disk; free space\\)"):
        files.write({tmp_path / "r.json": full})
    assert list(tmp_path.iterdir()) == []
