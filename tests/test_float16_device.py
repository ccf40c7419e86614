"""The simulated float16 device (`samexport.export.float16_device`): float16 arithmetic judged the same way
on every CPU, whether or not the CPU running the test has native float16 (the developers' AMD CPUs do
not; Xeons with AVX512-FP16 and ARM phones do)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from samexport.export import float16_device
from samexport.export.float16_device import Float16Arithmetic, product_accumulated_in_float16


def test_a_float16_accumulator_stops_growing_where_float16_cannot_add_the_term():
    """4,096 terms of 0.1: float32 sums them to 409.6, a float16 accumulator stalls at 256 (where half
    an ulp, 0.125, exceeds 0.1), on every CPU."""
    a, b = torch.full((1, 4096), 0.1), torch.ones(4096, 1)
    assert float(product_accumulated_in_float16(a, b)) == 256.0
    with Float16Arithmetic():
        assert float(a @ b) == 256.0
    assert abs(float(a @ b) - 409.6) < 0.1  # float32, in whatever order the BLAS sums


def test_one_rounding_per_term_as_a_fused_multiply_add_into_float16():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 7)).astype(np.float16)
    b = rng.standard_normal((7, 5)).astype(np.float16)
    expected = np.zeros((3, 5), np.float16)
    for k in range(7):  # products of float16 values are exact in float32: one rounding per step
        product = np.outer(a[:, k].astype(np.float32), b[k].astype(np.float32))
        expected = (expected.astype(np.float32) + product).astype(np.float16)
    got = product_accumulated_in_float16(
        torch.from_numpy(a.astype(np.float32)), torch.from_numpy(b.astype(np.float32))
    )
    np.testing.assert_array_equal(got.numpy(), expected.astype(np.float32))


def test_in_place_ops_and_views_act_on_the_tensor_itself():
    """A module's `x += y` or an in-place op through a view must change the tensor, rounded, not a copy."""
    x, y = torch.full((4,), 1.0001), torch.ones(4)
    with Float16Arithmetic():
        z = x.clone()  # 1.0001 is 1.0 in float16
        z += y
        z.view(2, 2).mul_(2)
        z.add_(1e-4)  # below half a float16 ulp of 4: rounded away in place
    assert torch.equal(z, torch.full((4,), 4.0))


@pytest.mark.parametrize(
    "shape, groups, stride, transposed",
    [
        ((8, 16, 3), 1, 1, False),
        ((16, 16, 3), 16, 2, False),
        ((8, 8, 1), 2, 1, False),
        ((8, 4, 2), 1, 2, True),
    ],
)
def test_convolutions_compute_the_convolution(shape, groups, stride, transposed):
    """Every kind of convolution the encoders and decoders hold (plain, depthwise, grouped, transposed)
    computes the convolution, to float16 accumulation's rounding."""
    cin, cout, k = shape
    torch.manual_seed(0)
    x = torch.randn(2, cin, 11, 13)
    weight = torch.randn(cin, cout, k, k) if transposed else torch.randn(cout, cin // groups, k, k)
    bias = torch.randn(cout)
    padding = 0 if transposed else k // 2
    ref = torch.ops.aten.convolution.default(
        x, weight, bias, [stride] * 2, [padding] * 2, [1, 1], transposed, [0, 0], groups
    )
    with Float16Arithmetic():
        got = torch.ops.aten.convolution.default(
            x, weight, bias, [stride] * 2, [padding] * 2, [1, 1], transposed, [0, 0], groups
        )
    assert got.shape == ref.shape
    assert float((got - ref).abs().max() / ref.abs().max()) < 5e-3


def first_cases(part, count):
    return dataclasses.replace(part, cases=lambda upstream: part.cases(upstream)[:count])


@pytest.fixture(scope="module")
def mobile_sam_decoder(fixture_checkpoint):
    """MobileSAM's prompt decoder part (the shared fill) as convert's LiteRT run describes it."""
    from helpers import build_quiet
    from samexport.export.options import ConvertOptions
    from samexport.families.registry import get_spec
    from samexport.parts import PartForm
    from samexport.reparam import reparameterize_model

    spec = get_spec("tinyvit")
    model = build_quiet("tinyvit", fixture_checkpoint("tinyvit"))
    shapes = spec.family.export_shapes(ConvertOptions(encoder="tinyvit", target="litert"))
    reference = spec.family.reference(model, shapes)
    parts = spec.family.export_parts(
        model, reparameterize_model(model), shapes, PartForm(False, False, False), reference
    )
    return first_cases(parts["decoder"], 2)


def test_the_decoder_a_float16_device_got_wrong_is_refused_and_the_fixed_one_passes(
    mobile_sam_decoder, monkeypatch
):
    """The default LiteRT decoder measured 25.0 dB on a CPU with native float16 arithmetic and passed at
    61 dB on one without: the simulation refuses it on any CPU (24-26 dB); summing the attention-weighted
    values in groups of 64 image keys brings it above the 35 dB floor."""
    from samexport.errors import SamExportError
    from samexport.export.target import check_float16_device
    from samexport.modeling import common

    monkeypatch.setattr(common, "KEYS_PER_PARTIAL_SUM", 10**9)  # the decoder before the fix
    before = check_float16_device(mobile_sam_decoder, "none")
    assert before.failures and not before.passed
    assert before.worst()["lowResMasks"]["psnr_db"] < 30
    monkeypatch.undo()

    after = check_float16_device(mobile_sam_decoder, "none")
    assert after.passed, after.failures
    assert after.worst()["lowResMasks"]["psnr_db"] > 45
    assert after.runner.startswith("float16 device arithmetic (simulated")

    from samexport.export.check import PartReport

    report = PartReport("decoder", "LiteRT", {}, {}, [], float16_device=before)
    with pytest.raises(SamExportError, match=r"on a float16 device \(simulated\).*--precision fp32"):
        report.raise_if_failed(
            "LiteRT", option_hint="--precision fp32 writes LiteRT files for float32 arithmetic"
        )


def test_grouped_key_sums_are_the_same_attention_in_float32():
    from samexport.modeling.common import weighted_values

    torch.manual_seed(0)
    attn = torch.softmax(torch.randn(2, 8, 5, 4096), -1)
    v = torch.randn(2, 8, 4096, 16)
    assert torch.allclose(weighted_values(attn, v), attn @ v, rtol=1e-5, atol=1e-6)
    short, values = torch.softmax(torch.randn(1, 8, 4096, 5), -1), torch.randn(1, 8, 5, 16)
    assert torch.equal(weighted_values(short, values), short @ values)  # image->token: few keys, one product


def test_parts_over_the_budget_say_so_instead_of_a_verdict(mobile_sam_decoder, monkeypatch):
    from samexport.export.target import check_float16_device

    monkeypatch.setattr(float16_device, "MAX_SIMULATED_GMACS", 0.001)
    report = check_float16_device(mobile_sam_decoder, "none")
    assert report.passed and not report.cases
    assert "not simulated" in report.runner and "GMACs" in report.runner
    assert report.to_json()["worst"] == {} and report.to_json()["passed"]


def test_a_float32_region_sums_long_products_in_float32_and_rounds_once():
    """A part's `float32_sums_over` (EdgeTAM: 4,096): the 4,096-term product sums in float32 (409.6,
    rounded once to float16's 409.5); a 100-term product still accumulates in float16."""
    long_a, long_b = torch.full((1, 4096), 0.1), torch.ones(4096, 1)
    short_a, short_b = torch.full((1, 100), 0.1), torch.ones(100, 1)
    with Float16Arithmetic(sums_over=4096):
        assert float(long_a @ long_b) == 409.5
        assert float(short_a @ short_b) == float(product_accumulated_in_float16(short_a, short_b))


class LongAndShortSums(torch.nn.Module):
    def forward(self, weights, values):
        return torch.matmul(weights, values), torch.matmul(weights[:, :, :100], values[:, :100])


def test_core_ml_keeps_the_long_sums_of_a_part_in_float32(tmp_path):
    """Core ML's float16 programs keep a matmul summing `sums_over` terms or more in float32 (and only it)."""
    from samexport.export import coreml_export
    from samexport.export.coreml_precision import float32_region
    from samexport.mileval import load_program
    from samexport.mileval.program import dtype_name

    example = (torch.rand(1, 3, 4096), torch.randn(1, 4096, 8))
    traced = coreml_export.trace(LongAndShortSums(), example)
    types = [coreml_export.tensor_input(f"x{i}", tuple(e.shape)) for i, e in enumerate(example)]
    selector = float32_region(pooling=False, sums_over=4096)
    mlmodel = coreml_export.convert(traced, types, ["long", "short"], "fp16", "iOS16", selector)
    mlmodel.save(str(tmp_path / "sums.mlpackage"))
    program = load_program(tmp_path / "sums.mlpackage")
    matmuls = [op for op in program.operations if op.op_type == "matmul"]
    assert sorted(dtype_name(op.outputs[0]) for op in matmuls) == ["fp16", "fp32"]
