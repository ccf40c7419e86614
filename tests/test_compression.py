"""The `--compress` modes the Neural Engine rewards (grouped palettes, int8 activations), calibration on
Linux through the evaluator, the ops they put in a program against coremltools' own arithmetic, and the
static multifunction decoder. Quality per family is measured by benchmarks/compression.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from helpers import assert_constexpr_ops_match_coremltools, invoke, one_line_error
from samexport.errors import UsageError
from samexport.export import coreml_compress, coreml_export
from samexport.export.compare import compare
from samexport.export.compression import COMPRESSIONS, compression
from samexport.export.options import ConvertOptions
from samexport.mileval import evaluate, load_program
from samexport.mileval.registry import OPS

NEW_MODES = ("palettize6g", "palettize4g", "w8a8", "a8w4")


class Block(nn.Module):
    """Convs wide enough for grouped palettes and above coremltools' 2048-weight threshold, a concat
    (shared activation ranges) and a linear below the threshold."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(16, 32, 3, padding=1)
        self.b = nn.Conv2d(16, 32, 3, padding=1)
        self.c = nn.Conv2d(64, 16, 3, padding=1)
        self.fc = nn.Linear(16, 16)

    def forward(self, x):
        y = torch.cat([torch.relu(self.a(x)), self.b(x)], 1)
        return self.fc(self.c(y).mean((2, 3)))


def converted(min_target: str):
    x = torch.randn(1, 16, 12, 12)
    traced = coreml_export.trace(Block().eval(), (x,))
    mlmodel = coreml_export.convert(
        traced, [coreml_export.tensor_input("x0", (1, 16, 12, 12))], ["y0"], "fp16", min_target
    )
    return mlmodel, x


def calibration_feeds(count=3):
    rng = np.random.default_rng(5)
    return [{"x0": rng.normal(size=(1, 16, 12, 12)).astype(np.float32)} for _ in range(count)]


@pytest.mark.parametrize("mode", NEW_MODES)
def test_new_modes_evaluate_and_match_coremltools_arithmetic(tmp_path, mode):
    """Each mode's program evaluates; its constexpr ops equal coremltools' materialisation and its
    quantize/dequantize ops equal coremltools' own quantization arithmetic."""
    from coremltools.optimize import _utils as cto_utils

    chosen = compression(mode)
    mlmodel, x = converted(chosen.min_target)
    compressed = coreml_compress.compress(mlmodel, chosen, {}, None, calibration_feeds())
    compressed.save(str(tmp_path / "c.mlpackage"))
    program = load_program(tmp_path / "c.mlpackage")
    types = program.op_types()
    assert ("quantize" in types and "dequantize" in types) == chosen.activations, types
    assert_constexpr_ops_match_coremltools(program)
    constants = program.constants()
    seen = {}

    def observe(name, value):
        seen[name] = value

    result = evaluate(program, {"x0": x.numpy()}, observe=observe)
    for op in (o for o in program.operations if o.op_type in ("quantize", "dequantize")):
        args = {k: constants.get(v.name, seen.get(v.name)) for k, v in op.inputs.items()}
        if op.op_type == "quantize":
            theirs = cto_utils.quantize_by_scale_and_zp(
                args["input"], args["scale"], args.get("zero_point"), args["output_dtype"]
            )
        else:
            theirs = cto_utils.dequantize_by_scale_and_zp(
                args["input"], args["scale"], args.get("zero_point")
            )
        ours = OPS[op.op_type](**args)
        np.testing.assert_array_equal(np.asarray(ours, np.float32), np.asarray(theirs, np.float32))
    with torch.no_grad():
        r = compare(result.outputs["y0"], Block().eval()(x).numpy())
    assert r["cosine"] > 0.98, r


def test_quantize_rounds_half_to_even_and_saturates():
    q = OPS["quantize"](
        input=np.array([0.5, 1.5, 2.5, -0.5, 300.0, -300.0], np.float32),
        scale=np.float32(1.0),
        output_dtype="int8",
    )
    assert q.tolist() == [0, 2, 2, 0, 127, -128] and q.dtype == np.int8
    per_channel = OPS["dequantize"](
        input=np.array([[2, 2], [4, 4]], np.int8), scale=np.array([0.5, 2.0], np.float32), axis=0
    )
    assert per_channel.tolist() == [[1.0, 1.0], [8.0, 8.0]]


def test_calibration_observes_every_value_and_ties_concat_ranges(tmp_path):
    mlmodel, _ = converted("iOS17")
    feeds = calibration_feeds(2)
    stats = coreml_compress.activation_ranges(mlmodel, feeds)
    both = np.concatenate([f["x0"] for f in feeds])
    # the input's range over both feeds (fp16 rounding), not the last feed's alone
    assert stats["x0"]["rmin"] == pytest.approx(both.min(), rel=1e-3)
    assert stats["x0"]["rmax"] == pytest.approx(both.max(), rel=1e-3)
    mlmodel.save(str(tmp_path / "m.mlpackage"))
    program = load_program(tmp_path / "m.mlpackage")
    concat = next(op for op in program.operations if op.op_type == "concat")
    names = [v.name for v in concat.inputs["values"]] + [concat.outputs[0].name]
    assert len({(stats[n]["rmin"], stats[n]["rmax"]) for n in names}) == 1


def test_kept_layers_stay_float(tmp_path):
    mlmodel, _ = converted("iOS18")
    layers = coreml_compress.weight_layers(mlmodel)
    kept = coreml_compress.kept_ops(mlmodel, ("first-last",))
    assert set(kept) == {layers[0][0], layers[-1][0]}
    compressed = coreml_compress.compress(mlmodel, compression("palettize4g"), kept, 1.5, [])
    compressed.save(str(tmp_path / "k.mlpackage"))
    program = load_program(tmp_path / "k.mlpackage")
    constants = program.constants()
    palettized = [op for op in program.operations if op.op_type == "constexpr_lut_to_dense"]
    assert len(palettized) == 2  # b and c; a and fc kept (fc is below the threshold anyway)
    original = Block().b.weight.detach().numpy().reshape(32, -1)
    bound = original.mean(1) + 1.5 * original.std(1)  # uniform init: max |w| is 1.73 sigma
    b = next(op for op in palettized if "b_weight" in op.name)
    values = OPS[b.op_type](**{k: constants[v.name] for k, v in b.inputs.items()}).reshape(32, -1)
    assert (values.max(1) <= bound + 1e-2).all() and original.max() > bound.max()  # clipped, then palettized
    by_name = coreml_compress.kept_ops(mlmodel, ("c",))
    assert list(by_name.values()) == ["--keep-layers c"]
    assert coreml_compress.unmatched(("c", "nosuchlayer"), [by_name]) == ["nosuchlayer"]


def test_mode_options_raise_the_target_and_refuse_what_does_not_apply():
    options = ConvertOptions(encoder="tinyvit", compress="palettize4g")
    assert options.min_target == "iOS18" and "raised from iOS16" in options.notes[0]
    assert options.variant_suffix == "Palettized4G"
    assert ConvertOptions(encoder="tinyvit", compress="w8a8", min_target="iOS18").min_target == "iOS18"
    assert ConvertOptions(encoder="tinyvit", decoder_shapes="multifunction").min_target == "iOS18"
    for kwargs, message in (
        ({"compress": "w8a8", "target": "onnx"}, "Core ML only"),
        ({"keep_layers": "first-last"}, "needs a --compress mode"),
        ({"compress": "w8a8", "weight_clip": 3.0}, "4-bit modes"),
        ({"compress": "palettize4g", "weight_clip": 0.5}, "from 1 to 10"),
        ({"compress": "a8w4", "keep_layers": "first-last,x"}, "not both"),
        ({"decoder_shapes": "multifunction", "target": "all"}, "Core ML only"),
        ({"decoder_shapes": "static"}, "enumerated or multifunction"),
    ):
        with pytest.raises(UsageError, match=message):
            ConvertOptions(encoder="tinyvit", **kwargs)
    assert set(NEW_MODES) <= set(COMPRESSIONS)
    assert all(COMPRESSIONS[m].new_style for m in NEW_MODES)


def test_cli_refuses_a_mode_for_onnx_in_one_line(capsys):
    result = invoke(capsys, "convert", "--encoder", "tinyvit", "--compress", "a8w4", "--target", "onnx")
    assert "Core ML only" in one_line_error(result)


def test_default_decoder_shape_is_the_single_click(tmp_path):
    from samexport.families.registry import get_spec

    family = get_spec("tinyvit").family
    signature = family.decoder_signature(family.token_counts((3, 1, 2)), (1, 4))
    assert signature.default_tokens == 2  # one click + SAM's padding token, not the smallest (2 = box)
    assert signature.shapes()[0] == (1, 2)
    from samexport.parts import ExportShapes, PartForm

    interface = family.part_interfaces(
        ExportShapes(signature.token_counts, (1, 4)), PartForm(True, True, False)
    )
    assert interface["decoder"].default.shapes["points"] == (1, 2, 3)
    no_single = family.decoder_signature(family.token_counts((3,)), (1,))
    assert no_single.default_tokens == no_single.token_counts[0]


@pytest.mark.slow
def test_toy_w8a8_and_multifunction_convert_and_validate_on_linux(toy, tmp_path, capsys):
    """A W8A8 export with a multifunction decoder (one static function per (B, N)), end to end through
    convert's checks and `samexport validate`, with the mask agreement reported."""
    out = tmp_path / "out"
    result = invoke(
        capsys,
        *("convert", "--encoder", "toy3", "--compress", "w8a8", "--decoder-shapes", "multifunction"),
        *("--batch", "1,4", "--output-dir", str(out), "--quiet"),
    )
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "ToyThreeW8A8.export.json").read_text())
    section = manifest["coreml"]
    assert section["min_target"] == "iOS18" and section["decoder_shapes"] == "multifunction"
    assert section["compression"]["calibration"]["feeds"]["encoder"] == 4
    assert manifest["validation"]["coreml"]["decoder"]["end_to_end"]["worst"] >= 0.9
    from samexport.coreml_package import CoreMLPackage

    decoder = CoreMLPackage(out / "ToyThreeDecoderW8A8.mlpackage")
    assert decoder.function == "points_3" and set(decoder.functions) == {"points_3", "points_3_batch_4"}
    assert decoder.io_of("points_3_batch_4")["inputs"][1]["shape"] == [4, 3, 3]
    assert "quantize" in decoder.op_census()
    report = tmp_path / "report.json"
    result = invoke(capsys, "validate", str(out / "ToyThreeW8A8.export.json"), "--json", str(report))
    assert result.returncode == 0, result.stderr
    assert "mask IoU end to end" in result.stdout
    decoder_report = json.loads(report.read_text())[str(out / "ToyThreeDecoderW8A8.mlpackage")]
    assert {c["inputs"]["points"][1] for c in decoder_report["cases"].values()} == {3}
    assert "4 prompt sets of 3 clicks" in decoder_report["cases"]


@pytest.mark.slow
def test_unknown_keep_layer_writes_nothing(toy, tmp_path, capsys):
    out = tmp_path / "out"
    result = invoke(
        capsys,
        *("convert", "--encoder", "toy3", "--compress", "palettize6g", "--keep-layers", "nosuch.layer"),
        *("--output-dir", str(out), "--quiet"),
    )
    assert "--keep-layers nosuch.layer matches no weight layer" in one_line_error(result)
    assert not out.exists() or not any(out.iterdir())


class PatchEmbed(nn.Module):
    """EfficientSAM's stem: a conv, channels last, plus a position embedding."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Conv2d(16, 64, 4, stride=4)
        self.pos = nn.Parameter(torch.randn(1, 3, 3, 64))

    def forward(self, x):
        return self.proj(x).permute(0, 2, 3, 1) + self.pos


def test_iOS18_conv_transpose_add_keeps_float_weights_instead_of_failing(tmp_path):
    """coremltools 9.0 cannot recompile a palettized conv -> transpose -> add of a constant at iOS18; the
    conv is found beforehand and kept float (and the rest compresses)."""
    x = torch.randn(1, 16, 12, 12)
    traced = coreml_export.trace(PatchEmbed().eval(), (x,))
    mlmodel = coreml_export.convert(
        traced, [coreml_export.tensor_input("x0", (1, 16, 12, 12))], ["y0"], "fp16", "iOS18"
    )
    hazards = coreml_compress.fusion_hazards(mlmodel)
    assert len(hazards) == 1 and "fuse_conv_bias" in next(iter(hazards.values()))
    with pytest.raises(AttributeError):
        coreml_compress.compress(mlmodel, compression("palettize4g"), {}, None, [])
    compressed = coreml_compress.compress(mlmodel, compression("palettize4g"), hazards, None, [])
    compressed.save(str(tmp_path / "p.mlpackage"))
    with torch.no_grad():
        r = compare(
            evaluate(load_program(tmp_path / "p.mlpackage"), {"x0": x.numpy()}).outputs["y0"],
            PatchEmbed()(x).numpy(),
        )
    assert r["psnr_db"] > 40, r
