"""LiteRT target: `.tflite` files converted by Google's converter (litert-torch) and checked by Google's
interpreter (ai-edge-litert) with its XNNPACK CPU delegate; their structure and float16 range in the
manifest; `validate`, `segment`'s predictor and `bench` through the same interpreter."""

from __future__ import annotations

import json

import pytest
from toy_family import toy_registered

from helpers import assert_rapsam_pipelines_on_the_export_equal_pytorchs, invoke, one_line_error
from samexport.families.registry import get_spec


@pytest.fixture(scope="module")
def toy_litert(toy_exports):
    """The toy family exported to LiteRT (float16 weights, the default precision) with two token counts and
    two prompt-set counts."""
    exported = toy_exports("litert")
    with toy_registered():
        yield exported


def test_every_part_is_checked_by_the_interpreter(toy_litert):
    out, manifest = toy_litert
    report = manifest["validation"]["litert"]
    assert report["passed"]
    for part, output in (("encoder", "imageEmbeddings"), ("decoder", "lowResMasks")):
        assert "LiteRT, XNNPACK CPU, float32 inference" in report[part]["runner"]  # the same on every CPU
        assert report[part]["float16_device"]["passed"]  # what a float16 phone gets, simulated
        assert manifest["litert"][part]["inference"] == "float16"
        assert report[part]["floors"][output] == {"min_psnr_db": 35.0}  # float16 weights and inference
        assert report[part]["worst"][output]["psnr_db"] >= 35
    # one static signature per token count (the toy's 3) and prompt-set count, the default first
    assert manifest["litert"]["decoder"]["signatures"] == ["points_3", "points_3_batch_4"]
    cases = report["decoder"]["cases"].values()
    assert {tuple(c["inputs"]["pointCoords"][:2]) for c in cases} == {(1, 3), (4, 3)}
    # prompt sets are computed independently: the simulation takes the cases of one prompt set
    simulated = report["decoder"]["float16_device"]["cases"].values()
    assert {tuple(c["inputs"]["pointCoords"][:2]) for c in simulated} == {(1, 3)}


def test_signatures_are_named_like_the_onnx_graphs(toy_litert):
    """What an Android app reads: the signature's input and output names are the interface's."""
    from ai_edge_litert.interpreter import Interpreter

    out, manifest = toy_litert
    signatures = Interpreter(model_path=str(out / "ToyThreeDecoder.tflite")).get_signature_list()
    interface = manifest["litert"]["decoder"]["interface"]
    assert set(signatures) == {"points_3", "points_3_batch_4"}
    for signature in signatures.values():
        assert sorted(signature["inputs"]) == sorted(t["name"] for t in interface["inputs"])
        assert sorted(signature["outputs"]) == sorted(t["name"] for t in interface["outputs"])


def test_the_manifest_records_each_files_structure_and_float16_range(toy_litert):
    from samexport.export import litert_export

    out, manifest = toy_litert
    for part in ("encoder", "decoder"):
        section = manifest["litert"][part]
        structure = section["structure"]
        assert structure == litert_export.structure(out / manifest["files"]["litert"][part]["path"])
        assert structure["ops"] and not structure["custom_ops"] and structure["max_rank"] >= 2
        assert structure["constants_by_type"]["FLOAT16"] > 0  # float16 quantization stored the weights so
        activations = section["activations"]
        assert activations["max_abs"] > 0 and activations["fits_float16"]
        assert activations["signature"] == section["signatures"][0]
    meta = litert_export.read_metadata(out / "ToyThreeDecoder.tflite")
    assert meta["com.samexport.part"] == "decoder" and meta["com.samexport.precision"] == "fp16"
    assert json.loads(meta["com.samexport.token_counts"]) == [3]


def test_validate_reruns_the_interpreter_and_refuses_a_broken_file(toy_litert, tmp_path, capsys):
    from samexport.export.validate import validate

    out, _ = toy_litert  # the toy family stays registered while the module's export lives
    reports = validate([out / "ToyThree.export.json"])
    assert all(r.passed for r in reports.values()) and len(reports) == 2
    report = validate([out / "ToyThreeEncoder.tflite"])[str(out / "ToyThreeEncoder.tflite")]
    assert report.passed and report.runner.startswith("LiteRT, XNNPACK CPU")
    broken = tmp_path / "ToyThreeEncoder.tflite"
    broken.write_bytes(b"\0" * 64)
    result = invoke(capsys, "validate", str(broken))
    assert result.returncode == 2 and "is not a readable LiteRT model" in one_line_error(result)


@pytest.mark.parametrize("damage", ["tail", "half", "header", "zeros", "metadata"])
def test_a_damaged_file_is_one_line_before_the_native_loader_reads_it(toy_litert, tmp_path, damage):
    """A truncated, zeroed or bit-flipped `.tflite` once crashed LiteRT's loader (SIGSEGV for the last
    1000 bytes cut) or ended in a Python traceback: the structure is checked first, in any process that
    loads one (here a child: a crash would be its exit status, not this test's)."""
    from helpers import run_cli

    out, _ = toy_litert
    data = bytearray((out / "ToyThreeDecoder.tflite").read_bytes())
    if damage == "tail":
        data = data[:-1000]
    elif damage == "half":
        data = data[: len(data) // 2]
    elif damage == "header":
        data[8:40] = bytes(b ^ 0xFF for b in data[8:40])
    elif damage == "zeros":
        data = bytearray(len(data))
    else:  # the JSON of samexport's metadata entry, bytes flipped in place
        start = bytes(data).rindex(b'{"com.samexport.')
        data[start + 1 : start + 9] = bytes(b ^ 0x80 for b in data[start + 1 : start + 9])
    broken = tmp_path / "ToyThreeDecoder.tflite"
    broken.write_bytes(bytes(data))
    result = run_cli("validate", str(broken), timeout=300)
    error = one_line_error(result)
    assert f"{broken.name} is not a readable LiteRT model" in error or "metadata is damaged" in error
    assert "convert it again" in error


def copy_export(out, tmp_path):
    import shutil

    folder = tmp_path / "export"
    shutil.copytree(out, folder)
    return folder, json.loads((folder / "ToyThree.export.json").read_text())


def test_validate_never_writes_a_report_over_what_it_reads(toy_litert, tmp_path, capsys):
    """--json naming the export's own manifest replaced it with the report, --force or not."""
    folder, _ = copy_export(toy_litert[0], tmp_path)
    manifest = folder / "ToyThree.export.json"
    before = manifest.read_bytes()
    for target in (manifest, folder / "ToyThreeDecoder.tflite"):
        result = invoke(capsys, "validate", str(manifest), "--json", str(target), "--force")
        assert "which this command reads; choose another name" in one_line_error(result)
    assert manifest.read_bytes() == before
    other = invoke(
        capsys, "validate", str(folder / "ToyThreeEncoder.tflite"), "--json", str(tmp_path / "x.export.json")
    )
    assert "named like an export manifest" in one_line_error(other)


@pytest.mark.parametrize("listed", ["../elsewhere/ToyThreeDecoder.tflite", "/etc/passwd", "link.tflite"])
def test_manifest_paths_stay_in_the_manifests_folder(toy_litert, tmp_path, capsys, listed):
    folder, manifest = copy_export(toy_litert[0], tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "ToyThreeDecoder.tflite").write_bytes((folder / "ToyThreeDecoder.tflite").read_bytes())
    (folder / "link.tflite").symlink_to(outside / "ToyThreeDecoder.tflite")
    manifest["files"]["litert"]["decoder"]["path"] = listed
    (folder / "ToyThree.export.json").write_text(json.dumps(manifest))
    result = invoke(capsys, "validate", str(folder / "ToyThree.export.json"))
    assert f"lists {listed!r}, outside its folder" in one_line_error(result)
    from samexport.errors import UsageError
    from samexport.export.runtimes import ExportPredictor

    with pytest.raises(UsageError, match="outside its folder"):  # what segment runs
        ExportPredictor(folder / "ToyThree.export.json", "litert")


def test_what_a_manifest_says_of_a_file_must_match_the_file(toy_litert, tmp_path, capsys):
    """An encoder placed at the decoder's path once failed with a KeyError after 42 s; a manifest listing
    .tflite files under coreai got a validation.litert entry written into it."""
    folder, manifest = copy_export(toy_litert[0], tmp_path)
    path = folder / "ToyThree.export.json"
    (folder / "ToyThreeDecoder.tflite").write_bytes((folder / "ToyThreeEncoder.tflite").read_bytes())
    result = invoke(capsys, "validate", str(path))
    assert (
        "lists ToyThreeDecoder.tflite as the LiteRT decoder, but the file is the LiteRT encoder"
        in one_line_error(result)
    )
    manifest["files"] = {"coreai": manifest["files"]["litert"]}
    path.write_text(json.dumps(manifest))
    before = path.read_bytes()
    error = one_line_error(invoke(capsys, "validate", str(path)))
    assert "as the Core AI" in error and "but the file is the LiteRT" in error
    assert path.read_bytes() == before


def test_method_is_for_core_ml_packages(toy_litert, capsys):
    out, _ = toy_litert
    result = invoke(capsys, "validate", str(out / "ToyThreeEncoder.tflite"), "--method", "coreml")
    assert "--method coreml chooses how Core ML packages run; these files are LiteRT" in one_line_error(
        result
    )


def test_the_error_line_stays_last_after_litert_was_loaded(toy_litert, tmp_path):
    """LiteRT's accelerators log `DestroyAccelerator` lines as the process ends: the CLI's error line must
    still be the last line on stderr."""
    import subprocess
    import sys

    out, _ = toy_litert
    script = (
        "import sys\n"
        "import numpy as np\n"
        "from samexport.export.litert_export import CompiledPart\n"
        f"part = CompiledPart({str(out / 'ToyThreeEncoder.tflite')!r}, 1)\n"
        "part.run('main', {'image': np.zeros((1, 3, 1024, 1024), np.float32)})\n"
        "sys.argv = ['samexport', 'validate', 'missing.tflite']\n"
        "from samexport.cli import main\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert "missing.tflite does not exist" in one_line_error(result)


def test_bench_measures_the_xnnpack_path_in_a_child(toy_litert):
    from samexport.bench.backends import backends_for
    from samexport.bench.child import run_part

    out, manifest = toy_litert
    backend = backends_for("cpu", False)["litert"]
    # rows say the arithmetic XNNPACK ran (float32 inference, what an app gets by default), not the weights'
    assert (backend.precision("none"), backend.precision("int8")) == ("fp32 (fp16 weights)", "int8")
    job = {
        "path": str(out / "ToyThreeDecoder.tflite"),
        "part": "decoder",
        "inputs": manifest["litert"]["decoder"]["interface"]["inputs"],
        "sizes": {"N": 3, "B": 4},
        "runs": 2,
        "warmup": 0,
        **backend.worker_job("cpu"),
    }
    row = run_part(job)
    assert row["status"] == "ok", row
    assert row["function"] == "points_3_batch_4" and row["threads"] == backend.threads()
    assert len(row["samples_ms"]) == 2 and row["load_ms"] > 0  # status "ok": no NaN/Inf output


def test_a_file_that_computes_something_else_fails_its_check_and_nothing_is_written(
    toy_litert, tmp_path, monkeypatch
):
    """The check judges what the runtime computes: a decoder converted with its mask logits off by 1% of
    their range fails in one line, and the run leaves nothing."""
    from samexport.errors import SamExportError
    from samexport.export import litert_export
    from samexport.export.convert import convert
    from samexport.export.options import ConvertOptions

    real = litert_export.NamedPart.forward

    def shifted(self, **feeds):
        outputs = real(self, **feeds)
        if "lowResMasks" in outputs:
            masks = outputs["lowResMasks"]
            outputs["lowResMasks"] = masks + 0.01 * (masks.max() - masks.min())
        return outputs

    monkeypatch.setattr(litert_export.NamedPart, "forward", shifted)
    out = tmp_path / "out"
    options = ConvertOptions(encoder="toy3", target="litert", precision="fp32", points=(1,), output_dir=out)
    with pytest.raises(SamExportError, match="LiteRT decoder falls below the quality floor: lowResMasks"):
        convert(options, quiet=True)
    assert not out.exists()


def test_int8_is_dynamic_range_quantization_held_to_the_compressed_floor(toy_litert, tmp_path):
    """--compress int8: int8 weights, float32 arithmetic whatever --precision (one file name for both)."""
    from samexport.export import litert_export
    from samexport.export.convert import convert
    from samexport.export.options import ConvertOptions, artifact_names

    def options(precision="fp16"):  # the toy stays registered while the module's export lives
        return ConvertOptions(
            encoder="toy3", target="litert", compress="int8", precision=precision, output_dir=tmp_path
        )

    names = {p: artifact_names(get_spec("toy3"), options(p)) for p in ("fp16", "fp32")}
    files = {p: {k: v for k, v in n.items() if k[0] == "litert"} for p, n in names.items()}
    assert (
        files["fp16"] == files["fp32"]
        and files["fp16"][("litert", "encoder")] == "ToyThreeEncoderInt8.tflite"
    )
    out, manifest = tmp_path, convert(options(), quiet=True)
    report = manifest["validation"]["litert"]
    assert report["passed"] and manifest["litert"]["weights"] == "int8"
    for part in ("encoder", "decoder"):
        floors = report[part]["floors"]
        assert all(f["min_cosine"] == 0.98 and f["min_psnr_db"] == 20.0 for f in floors.values()), floors
        assert "float32" in report[part]["runner"]
        structure = manifest["litert"][part]["structure"]
        assert structure["constants_by_type"].get("INT8", 0) > 0
        meta = litert_export.read_metadata(out / manifest["files"]["litert"][part]["path"])
        assert meta["com.samexport.precision"] == "fp32" and meta["com.samexport.compression"] == "int8"
        # Core ML's compression fields (activations, deployment target, kept layers) are not LiteRT's
        config = json.loads(meta["com.samexport.compression_config"])
        assert config["mode"] == "int8" and not {"activations", "min_target", "keep_layers"} & set(config)


def test_sam_vit_h_over_the_flatbuffer_limit_is_refused_up_front(capsys, tmp_path):
    result = invoke(
        capsys, "convert", "--encoder", "sam_vit_h", "--target", "litert", "--output-dir", str(tmp_path)
    )
    assert "LiteRT flatbuffer would hold 2.5" in one_line_error(result)
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize(
    "model,precision",
    [("rapsam_r50", "fp32"), ("repvit", "fp16")],
)
def test_real_families_convert_and_the_interpreter_reproduces_pytorch(tmp_path, model, precision):
    """A real family per precision (the toy goes through every target's mechanics in test_targets.py, and
    benchmarks/litert_exports.py measures every family): RAP-SAM's four parts at a small input size in
    float32, within 1e-4 of max |ref| as onnxruntime is (the tube head, pooling over 5 frames: 1e-3), and its
    pipelines over them against PyTorch's; RepViT-SAM at 1024 in float16, after the simulated float16
    device."""
    from samexport.export.convert import convert
    from samexport.export.options import ConvertOptions

    family = get_spec(model).family
    extra = {"input_size": (256, 352), "points": (1, 3)} if family.prompts_are_queries else {"points": (1,)}
    manifest = convert(
        ConvertOptions(encoder=model, target="litert", precision=precision, output_dir=tmp_path, **extra),
        quiet=True,
    )
    report = manifest["validation"]["litert"]
    assert report["passed"]
    assert set(manifest["files"]["litert"]) == set(family.bench_parts)
    if family.segmenter("video") is not None:  # a signature per tube length, and the pipelines over them
        assert manifest["litert"]["tube"]["signatures"] == [f"frames_{t}" for t in (5, 4, 3, 2, 1)]
        assert list(report["tube"]["cases"]) == ["5 frames", "4 frames", "3 frames", "2 frames", "1 frame"]
        assert_rapsam_pipelines_on_the_export_equal_pytorchs(next(tmp_path.glob("*.export.json")), "litert")
    for part in manifest["files"]["litert"]:
        worst = report[part]["worst"]
        if precision == "fp32":  # the tube head's poolings over 5 frames: 1e-3 (quality.FP32_POOLED_MAX_REL)
            bar = 1e-3 if part == "tube" else 1e-4
            assert all(w["rel"] <= bar for w in worst.values()), (part, worst)
        else:  # checked in float32 inference, and meant for float16 arithmetic after the simulated device
            assert all(w["psnr_db"] >= 35 for w in worst.values()), (part, worst)
            assert "float32 inference" in report[part]["runner"]
            simulated = report[part]["float16_device"]
            assert simulated["passed"] and simulated["worst"], (part, simulated)
            assert manifest["litert"][part]["inference"] == "float16"
        assert not manifest["litert"][part]["structure"]["custom_ops"]
