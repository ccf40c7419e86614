"""Every registered export target meets the same contract, on the toy family at small shapes (one export per
target, each with the target's marker): what convert checks and records, the export as a session, the
predictor over it against the model within the target's own floor, validate's rerun, and a damaged file as
one line. A new target is tested here by registering it; what is particular to a target stays in its module
(test_coreai.py, test_litert.py, ...)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from toy_family import toy_registered

from helpers import invoke, one_line_error, target_params, toy_predictor_against_the_model


@pytest.fixture(scope="module", params=target_params())
def toy_export(request, toy_exports):
    """(target, folder, manifest) of the toy family exported to one target with two prompt-set counts (the
    session's export, shared with the target's own module)."""
    folder, manifest = toy_exports(request.param)
    with toy_registered():
        yield request.param, folder, manifest


def floor_met(actual, expected, floor) -> bool:
    from samexport.export.compare import compare
    from samexport.export.quality import shortfalls

    return not shortfalls(compare(actual, expected), floor)


def test_every_part_is_written_checked_and_recorded(toy_export):
    from samexport.export.target import targets

    target, folder, manifest = toy_export
    report = manifest["validation"][target]
    assert report["passed"]
    assert set(manifest["files"][target]) == {"encoder", "decoder"}
    for part, entry in manifest["files"][target].items():
        assert (folder / entry["path"]).exists() and targets()[target].describes(folder / entry["path"])
        assert report[part]["cases"] and report[part]["floors"]  # checked, against the floors it names
        assert manifest[target][part]["interface"]["inputs"]  # an app reads the interface from the manifest


def test_the_export_is_a_session_of_every_part(toy_export):
    from samexport.export.runtimes import open_session

    target, folder, manifest = toy_export
    with open_session(folder / "ToyThree.export.json", target) as session:
        assert session.backend == target and set(session.parts) == {"encoder", "decoder"}
        encoder = session.interfaces["encoder"]
        feed = np.zeros(encoder.default.shapes[encoder.input_names[0]], np.float32)
        outputs = session.run("encoder", {encoder.input_names[0]: feed})
        assert set(outputs) == set(encoder.output_names)


def test_the_predictor_runs_the_files_like_the_model_within_the_targets_floor(toy_export):
    target, folder, manifest = toy_export
    (masks, iou), (expected, expected_iou), predictor = toy_predictor_against_the_model(
        folder / "ToyThree.export.json", target
    )
    assert masks.shape == (5, 4, 256, 256)
    floors = manifest["validation"][target]["decoder"]["floors"]
    assert floor_met(masks, expected, floors["lowResMasks"]), floors
    assert np.abs(iou - expected_iou).max() <= 0.01


def test_validate_reruns_the_check_and_a_damaged_file_is_one_line(toy_export, tmp_path, capsys):
    import shutil

    from samexport.export.validate import validate

    target, folder, manifest = toy_export
    reports = validate([folder / "ToyThree.export.json"])
    assert len(reports) == 2 and all(r.passed for r in reports.values())
    recorded = json.loads((folder / "ToyThree.export.json").read_text())["validation"][target]
    assert recorded["passed"]  # validate read the manifest, never rewrote it
    source = folder / manifest["files"][target]["decoder"]["path"]
    damaged = tmp_path / source.name
    if source.is_dir():  # a package or asset folder: its weights cut short
        shutil.copytree(source, damaged)
        weights = max((p for p in damaged.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    else:
        damaged.write_bytes(source.read_bytes()[: source.stat().st_size // 3])
    result = invoke(capsys, "validate", str(damaged))
    assert result.returncode in (1, 2)
    one_line_error(result, result.returncode)
