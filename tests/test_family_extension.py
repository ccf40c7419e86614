"""A third family needs only its family module, its model module and one registry line.

The family is tests/toy_family.py: its model classes (the model module), its Family subclass (the
family module) and one `register_model` row. It is built, converted to ONNX and checked by the same
code every real family goes through.
"""

from __future__ import annotations

import json

import pytest
import torch
from toy_family import TOKENS, toy_registered

from samexport.bench.backends import DeviceAppBackend
from samexport.export.target import ExportTarget, part_metadata
from samexport.families.registry import get_spec
from samexport.runtime import TorchRunner


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
    assert manifest["onnx"]["decoder"]["interface"]["inputs"][1]["shape"] == ["B", "N", 2]
    assert manifest["validation"]["onnx"]["passed"]
    assert manifest["validation"]["onnx"]["decoder"]["worst"]["lowResMasks"]["rel"] <= 1e-4
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
    assert row["tokens"] == TOKENS and row["family"] == "threetoken"
    result = {
        "device": {"label": "test"},
        "options": {"target": "onnx"},
        "rows": [{**row, "status": "ok", "stats": {"median_ms": 1.0}}],
    }
    assert "three-token decoder" in report.paper_table([result])


# -- a new export target: one class, registered; every family's parts go through it -------------------
class TorchScriptTarget(ExportTarget):
    """A toy target: each part traced to TorchScript (`<stem><Part>.pt`), its samexport metadata in the
    file's extra files, run back by torch.jit.load. It names no family and no part."""

    name = "torchscript"
    title = "TorchScript"
    extension = ".pt"
    compressions = ("none",)
    packed_prompts = False
    dynamic = False

    precisions = ("fp32",)

    def export(self, job, paths):
        parts = job.parts(self.form(job.options))
        section = {}
        for name, part in parts.items():
            traced = torch.jit.trace(part.module(), part.example(), check_trace=False)
            meta = {
                **part_metadata(job, part, "fp32", self),
                "com.samexport.inputs": json.dumps(part.interface.input_names),
                "com.samexport.outputs": json.dumps(part.interface.output_names),
            }
            extra = {"samexport.json": json.dumps(meta)}
            torch.jit.save(traced, str(paths[name]), _extra_files=extra)
            section[name] = {"interface": part.interface.describe()}
        return section, self.check(job, parts, paths) if job.options.validate else None

    def runner(self, path, method="auto", fp32_reference=True):
        meta = self.read_metadata(path)
        outputs, inputs = (json.loads(meta[f"com.samexport.{k}"]) for k in ("outputs", "inputs"))
        return TorchRunner(torch.jit.load(str(path)), outputs, inputs)

    def read_metadata(self, path):
        extra = {"samexport.json": ""}
        torch.jit.load(str(path), _extra_files=extra)
        return json.loads(extra["samexport.json"])


@pytest.fixture
def torchscript_target():
    from samexport.export.target import register_target, targets, unregister_target

    targets()
    register_target(TorchScriptTarget)
    try:
        yield
    finally:
        unregister_target("torchscript")


def representative_models():
    """The first registered model of every family (list_models() order), the toy family's too."""
    from samexport.families.registry import get_spec, list_models

    firsts = {}
    for name in list_models():
        firsts.setdefault(get_spec(name).family.name, name)
    return list(firsts.values())


def convert_with_the_toy_target(model, out):
    from samexport.export.convert import convert
    from samexport.export.options import ConvertOptions
    from samexport.families import PromptFamily

    family = get_spec(model).family
    queries = isinstance(family, PromptFamily) and family.prompts_are_queries  # RAP-SAM: any input size
    extra = {"input_size": (256, 352)} if queries else {}
    options = ConvertOptions(encoder=model, target="torchscript", output_dir=out, points=(1,), **extra)
    return convert(options, quiet=True)


def test_a_new_target_exports_every_part_of_a_new_family(toy_model, torchscript_target, tmp_path):
    from samexport.export.options import ConvertOptions
    from samexport.export.validate import validate

    assert ConvertOptions(encoder="toy3", target="all").targets[-1] == "torchscript"
    manifest = convert_with_the_toy_target("toy3", tmp_path)
    assert set(manifest["files"]["torchscript"]) == {"encoder", "decoder"}
    report = manifest["validation"]["torchscript"]
    assert report["passed"] and report["decoder"]["worst"]["lowResMasks"]["rel"] <= 1e-5
    reports = validate([tmp_path / "ToyThree.export.json"])  # the same check path reads its files back
    assert all(r.passed for r in reports.values()) and len(reports) == 2


@pytest.mark.slow
@pytest.mark.parametrize("model", [m for m in representative_models()])
def test_a_new_target_exports_every_family(torchscript_target, tmp_path, model):
    """Every registered family's parts (RAP-SAM's three included) through the toy target, checked."""
    manifest = convert_with_the_toy_target(model, tmp_path)
    family = get_spec(model).family
    assert set(manifest["files"]["torchscript"]) == set(family.bench_parts)
    assert manifest["validation"]["torchscript"]["passed"]


# -- a new bench device: a device app, one class -------------------------------------------------------
class ToyPhoneApp(DeviceAppBackend):
    """A device app that 'runs' by answering every job of the plan with fixed samples."""

    device = "toyphone"
    target = "coreml"
    app_parts = ("encoder", "decoder")

    def check_platform(self):
        pass

    def find_app(self, app_dir):
        return app_dir

    def stage(self, root, plan, files):
        (root / "plan.json").write_text(json.dumps(plan))
        for file in files:
            assert file.exists()
        return root

    def build(self, root, team):
        return root, "toy phone"

    def run(self, build, plan, timeout_s, say):
        from samexport.bench.report import SCHEMA
        from samexport.bench.stats import summarize

        rows = [
            {**job, "job_id": job["id"], "status": "ok", "stats": summarize([2.0, 3.0, 4.0])}
            for job in json.loads((build / "plan.json").read_text())["jobs"]
        ]
        return {"schema": SCHEMA, "device": {"label": "?"}, "options": {"target": "coreml"}, "rows": rows}


def test_a_new_device_app_measures_through_the_same_bench(toy_model, tmp_path):
    from samexport.bench import backends
    from samexport.bench.orchestrate import Bench, BenchOptions

    backends.register_backend(ToyPhoneApp())
    try:
        options = BenchOptions(
            device="toyphone", encoders=("toy3",), models_dir=tmp_path / "models", harness_dir=tmp_path
        )
        result = Bench(options, quiet=True).run()
    finally:
        backends.unregister_backend("toyphone")
    assert result["device"]["label"] == "toy phone"
    assert [(r["part"], r["family"], r["status"]) for r in result["rows"]] == [
        ("encoder", "threetoken", "ok"),
        ("decoder", "threetoken", "ok"),
        ("decoder", "threetoken", "ok"),
    ]
    assert (tmp_path / "models" / "ToyThreeDecoder.mlpackage").exists()
