"""The state between steps as data (`parts.Carried`), the step loop over any session (`sequence`) and
`check_sequence`, on the toy stateful family (tests/toy_stateful.py) through every registered target."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from toy_stateful import SLOTS, clip, toy_sequence_registered

from helpers import target_params
from samexport.errors import UsageError
from samexport.export.check import check_sequence
from samexport.export.quality import part_floors
from samexport.parts import Carried
from samexport.runtime import Session
from samexport.sequence import SequencePipeline, step_order


@pytest.fixture(scope="module")
def toy():
    with toy_sequence_registered() as spec:
        yield spec


def reference_session(toy, scale: float = 1.0):
    """The toy's PyTorch session; `scale` != 1 multiplies the step's mixing weights (a broken export)."""
    from samexport.zoo import torch_session

    session, _ = torch_session(toy.name)
    if scale != 1.0:
        module = session.runners["step"].module
        with torch.no_grad():
            module.model.mix.weight.mul_(scale)
    return session


def floors_of(session, precision: str):
    return {
        p: part_floors(session.interfaces[p], precision, "none", r.runtime)
        for p, r in session.runners.items()
    }


def test_a_carried_input_is_fed_the_newest_states_first_and_zeros_before_the_clip(toy):
    pipeline = SequencePipeline(reference_session(toy))
    assert pipeline.parts == ["encoder", "step"]
    outputs = pipeline.run(clip(3))
    fed = [f["memory"] for f in pipeline.fed["step"]]
    assert not fed[0].any()  # no earlier step: both slots empty
    np.testing.assert_array_equal(fed[1][0], outputs[0]["step"]["hidden"][0])
    assert not fed[1][1].any()
    np.testing.assert_array_equal(fed[2][0], outputs[1]["step"]["hidden"][0])
    np.testing.assert_array_equal(fed[2][1], outputs[0]["step"]["hidden"][0])
    assert fed[2].shape[0] == SLOTS


def test_carried_declarations_are_checked():
    with pytest.raises(ValueError, match="slots must be at least 1"):
        Carried("step", "hidden", 0)
    with pytest.raises(ValueError, match="empty must be one of zeros"):
        Carried("step", "hidden", 1, "noise")


def test_parts_feeding_each_other_at_one_step_are_refused(toy):
    session = reference_session(toy)
    interfaces = dict(session.interfaces)
    encoder = interfaces["encoder"]
    interfaces["encoder"] = type(encoder)(**{**encoder.__dict__, "upstream": {"frame": "step"}})
    with pytest.raises(UsageError, match="feed each other at one step"):
        step_order(interfaces, ["encoder", "step"])


def test_check_sequence_fails_a_step_that_computes_something_else(toy):
    report = check_sequence(
        reference_session(toy, 1.01),
        reference_session(toy),
        clip(3),
        floors_of(reference_session(toy), "fp32"),
    )
    assert not report.passed
    assert any("teacher-forced" in f for f in report.failures) and any("(free)" in f for f in report.failures)
    assert not any(" encoder " in f for f in report.failures)  # the encoder is untouched


def test_a_session_without_a_part_refuses_in_one_line(toy):
    session = reference_session(toy)
    partial = Session("torch", toy.name, session.interfaces, {"encoder": session.runners["encoder"]})
    with pytest.raises(UsageError, match="has no step part"):
        SequencePipeline(partial)


@pytest.mark.parametrize("target", target_params())
def test_the_toy_stateful_family_round_trips_every_target(toy, target, tmp_path):
    """Convert (with the target's own checks), the manifest's record of the loop, and the clip through the
    export against PyTorch frame by frame: each part teacher-forced and the chain running free."""
    from samexport.export.convert import convert
    from samexport.export.options import ConvertOptions
    from samexport.export.runtimes import open_session
    from samexport.export.target import targets

    options = ConvertOptions(encoder=toy.name, target=target, output_dir=tmp_path)
    manifest = convert(options, quiet=True)
    path = next(Path(tmp_path).glob("*.export.json"))
    written = json.loads(path.read_text())
    assert manifest["files"][target].keys() == {"encoder", "step"}
    carried = written[target]["step"]["interface"]["carried"]  # an app reads the loop from the manifest
    assert carried == {"memory": {"part": "step", "output": "hidden", "slots": SLOTS, "empty": "zeros"}}
    with open_session(path, target) as session:
        assert session.interfaces["step"].carried["memory"].slots == SLOTS
        report = check_sequence(
            session, reference_session(toy), clip(5), floors_of(session, targets()[target].precision(options))
        )
    assert report.passed, report.failures
    assert report.steps == 5 and set(report.results[-1]) == {"encoder", "step"}


def test_segment_refuses_a_family_that_takes_no_prompts_in_one_line(toy, tmp_path):
    from samexport.segment import SegmentOptions

    with pytest.raises(UsageError, match="toyseq takes no clicks or boxes"):
        SegmentOptions(
            image=tmp_path / "x.png", encoder="toyseq", output=tmp_path / "o.png", points=[(1, 1, 1)]
        )
