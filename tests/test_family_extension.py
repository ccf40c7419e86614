"""A third family needs only its family module, its model module and one registry line.

The family is tests/toy_family.py: its model classes (the model module), its Family subclass (the
family module) and one `register_model` row. It is built, converted to ONNX and checked by the same
code every real family goes through.
"""

from __future__ import annotations

import json

import pytest
from toy_family import TOKENS, toy_registered


@pytest.fixture
def toy_model():
    with toy_registered() as spec:
        yield spec


def test_a_new_family_exports_to_onnx_with_its_own_token_rule(toy_model, tmp_path, capsys):
    from samexport.cli import run
    from samexport.export import onnx_export
    from samexport.info import model_info

    info = model_info("toy3")
    assert info["family"] == "threetoken" and "decoder_3_tokens" in info["gmacs"]
    code = run(["convert", "--encoder", "toy3", "--target", "onnx", "--output-dir", str(tmp_path), "--quiet"])
    assert code == 0, capsys.readouterr().err
    manifest = json.loads((tmp_path / "ToyThree.export.json").read_text())
    assert manifest["decoder_prompt"]["token_counts"] == [TOKENS]
    assert manifest["input_contract"]["family"] == "threetoken"
    assert manifest["onnx"]["decoder"]["num_points"] == f"fixed {TOKENS} tokens"
    assert manifest["validation"]["onnx"]["passed"]
    assert manifest["validation"]["onnx"]["decoder"]["worst_masks"]["rel"] <= 1e-4
    session = onnx_export.session(tmp_path / "ToyThreeDecoder.onnx")
    assert [i.name for i in session.get_inputs()] == ["imageEmbeddings", "pointCoords", "pointLabels"]
    # its own token count, fixed; the prompt-set count B is dynamic for every family
    assert [i.shape for i in session.get_inputs()][1] == ["numPromptSets", TOKENS, 2]
    assert any(c.startswith("4 prompt sets") for c in manifest["validation"]["onnx"]["decoder"]["cases"])


def test_a_new_family_in_bench_rows_and_reports(toy_model):
    from samexport.bench import report
    from samexport.bench.orchestrate import Bench, BenchOptions

    row = Bench(BenchOptions(encoders=("toy3",)), quiet=True).row_template(
        "toy3", "decoder", 1, "cpu", "fp32", None
    )
    assert row["tokens"] == TOKENS and row["style"] == "threetoken"
    result = {
        "device": {"label": "test"},
        "options": {"target": "onnx"},
        "rows": [{**row, "status": "ok", "stats": {"median_ms": 1.0}}],
    }
    assert "three-token decoder" in report.paper_table([result])
