"""The NumPy ML-program evaluator, op by op: small PyTorch modules converted by coremltools, saved,
read back and evaluated, against PyTorch. Family-level checks against the official outputs are in
test_validate.py."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import assert_constexpr_ops_match_coremltools
from samexport.errors import UsageError
from samexport.export import coreml_compress, coreml_export
from samexport.export.compare import compare
from samexport.export.compression import compression
from samexport.mileval import UnsupportedOpError, evaluate, load_program, supported_ops

# The op types the issue lists as used by RepViT-SAM (fused and unfused), TinyViT, EfficientSAM and the
# SAM decoder; every one must appear in a program these tests evaluate.
LISTED_OPS = {
    "add",
    "batch_norm",
    "cast",
    "concat",
    "const",
    "conv",
    "conv_transpose",
    "cos",
    "equal",
    "expand_dims",
    "gelu",
    "layer_norm",
    "linear",
    "matmul",
    "mul",
    "not_equal",
    "pad",
    "pow",
    "real_div",
    "reduce_mean",
    "relu",
    "reshape",
    "sigmoid",
    "sin",
    "slice_by_index",
    "softmax",
    "split",
    "sqrt",
    "stack",
    "sub",
    "transpose",
}
SEEN_OPS: set = set()


def save_converted(module: nn.Module, examples, path, precision="fp32", enumerated=None, min_target="iOS16"):
    """Trace, convert (like samexport convert does) and save; returns the read-back program."""
    torch.manual_seed(0)
    traced = coreml_export.trace(module.eval(), examples)
    inputs = []
    for i, example in enumerate(examples):
        shape = [(1, n, 3) for n in enumerated] if enumerated and i == 0 else tuple(example.shape)
        inputs.append(coreml_export.tensor_input(f"x{i}", shape))
    with torch.no_grad():
        outputs = module(*examples)
    count = len(outputs) if isinstance(outputs, tuple) else 1
    mlmodel = coreml_export.convert(traced, inputs, [f"y{i}" for i in range(count)], precision, min_target)
    mlmodel.save(str(path))
    program = load_program(path)
    SEEN_OPS.update(program.op_types())
    return program


def run_both(module, examples, program):
    with torch.no_grad():
        expected = module(*examples)
    expected = expected if isinstance(expected, tuple) else (expected,)
    result = evaluate(program, {f"x{i}": e.numpy() for i, e in enumerate(examples)})
    return [(result.outputs[f"y{i}"], e.numpy()) for i, e in enumerate(expected)], result


class Convolutions(nn.Module):
    """Every conv form the SAM encoders and decoders use, plus BatchNorm that coremltools cannot fold."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.grouped = nn.Conv2d(8, 12, 3, padding=1, groups=2)
        self.dilated = nn.Conv2d(12, 12, 3, padding=2, dilation=2)
        self.pointwise = nn.Conv2d(12, 16, 1, stride=2)
        self.same = nn.Conv2d(16, 16, 5, padding="same")
        self.patch = nn.Conv2d(16, 24, 4, stride=4)
        self.up = nn.ConvTranspose2d(24, 8, 2, stride=2)
        self.up_overlap = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.group_norm = nn.GroupNorm(1, 4)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        x = F.gelu(self.stem(x))
        x = self.bn(x + self.depthwise(x))  # BN after a branch sum stays a batch_norm op
        x = F.relu(self.grouped(x))
        x = self.dilated(x)
        x = self.same(self.pointwise(x))
        x = self.up_overlap(self.up(self.patch(x)))
        return self.group_norm(x)


class Attention(nn.Module):
    """The transformer and prompt-encoder pieces: linear, heads, softmax, slicing, padding, labels."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(16, 48)
        self.proj = nn.Linear(16, 16)
        self.norm = nn.LayerNorm(16)
        self.table = nn.Parameter(torch.randn(4, 16))

    def forward(self, tokens, labels):
        b, n, c = tokens.shape
        q, k, v = self.qkv(self.norm(tokens)).reshape(b, n, 3, 2, 8).permute(2, 0, 3, 1, 4).unbind(0)
        attn = torch.softmax((q * 8**-0.5) @ k.transpose(-2, -1), dim=-1)
        x = self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))
        halves = torch.split(x, 8, dim=-1)
        x = torch.cat([halves[1], halves[0]], dim=-1)[:, ::2]  # split, concat, strided slice
        x = F.pad(x, (0, 0, 1, 2))  # 12 tokens -> 6 -> 9
        x = x + torch.sigmoid(x) * torch.sin(x) - torch.cos(x) ** 2
        x = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1.0)
        coords = torch.stack([x[..., 0], x[..., 1]], dim=-1)
        labels = labels.unsqueeze(-1)
        embedded = (labels != -1).float() * coords.sum(-1, keepdim=True)
        embedded = embedded + (labels == 1).float() * self.table[1] + (labels == 0).float() * self.table[0]
        return x, F.gelu(embedded, approximate="tanh")


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_convolutions_match_pytorch(tmp_path, precision):
    module, x = Convolutions(), torch.randn(1, 3, 64, 64)
    program = save_converted(module, (x,), tmp_path / "conv.mlpackage", precision)
    assert {"conv", "conv_transpose", "batch_norm"} <= set(program.op_types())
    [(actual, expected)], _ = run_both(module, (x,), program)
    r = compare(actual, expected)
    assert r["rel"] < 1e-5 if precision == "fp32" else r["psnr_db"] > 45, r


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_attention_pieces_match_pytorch(tmp_path, precision):
    module = Attention()
    examples = (torch.randn(1, 12, 16), torch.tensor([[1.0, 0.0, -1.0, 1.0, 0.0, -1.0, 1.0, 1.0, -1.0]]))
    program = save_converted(module, examples, tmp_path / "attn.mlpackage", precision)
    pairs, _ = run_both(module, examples, program)
    for actual, expected in pairs:
        r = compare(actual, expected)
        assert r["rel"] < 1e-5 if precision == "fp32" else r["psnr_db"] > 45, r


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_sam_vit_encoder_matches_pytorch(tmp_path, precision):
    """SAM ViT-B's blocks at 256 px: windows padded 16 -> 21, relative positions, one global block."""
    from samexport.modeling.image_encoder import ImageEncoderViT

    torch.manual_seed(0)
    module = ImageEncoderViT(
        embed_dim=64, depth=2, num_heads=2, global_attn_indexes=[1], img_size=256, window_size=7, out_chans=32
    )
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    x = torch.randn(1, 3, 256, 256)
    program = save_converted(module, (x,), tmp_path / "vit.mlpackage", precision)
    [(actual, expected)], _ = run_both(module, (x,), program)
    r = compare(actual, expected)
    assert r["rel"] < 1e-4 if precision == "fp32" else r["psnr_db"] > 40, r


def test_evaluated_programs_cover_the_listed_ops(tmp_path):
    """Together with the convolution/attention programs, the real packages of test_validate hold the rest."""
    for precision in ("fp32", "fp16"):
        save_converted(
            Convolutions(), (torch.randn(1, 3, 32, 32),), tmp_path / f"c{precision}.mlpackage", precision
        )
        save_converted(
            Attention(),
            (torch.randn(1, 6, 16), torch.ones(1, 6)),
            tmp_path / f"a{precision}.mlpackage",
            precision,
        )
    assert LISTED_OPS <= SEEN_OPS, sorted(LISTED_OPS - SEEN_OPS)
    assert LISTED_OPS <= set(supported_ops()) | {"const"}


class Scaled(nn.Module):
    """A weight large enough that its conv output overflows float16 (max 65504) before a LayerNorm."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 1)
        with torch.no_grad():
            self.conv.weight.mul_(scale)

    def forward(self, x):
        return F.layer_norm(self.conv(x).permute(0, 2, 3, 1), (8,)).permute(0, 3, 1, 2)


def test_fp16_overflow_is_located(tmp_path):
    module, x = Scaled(1e5), torch.randn(1, 4, 8, 8)
    program = save_converted(module, (x,), tmp_path / "scaled.mlpackage", "fp16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # issue 12 item 15: overflow is reported, never warned on stderr
        result = evaluate(program, {"x0": x.numpy()})
    assert result.fp16_overflows and result.fp16_overflows[0]["type"] == "conv"
    assert result.first_non_finite["type"] == "conv"
    assert not np.isfinite(result.outputs["y0"]).all()
    as_fp32 = evaluate(program, {"x0": x.numpy()}, "fp32")
    assert np.isfinite(as_fp32.outputs["y0"]).all() and not as_fp32.fp16_overflows
    with torch.no_grad():
        assert compare(as_fp32.outputs["y0"], module(x).numpy())["psnr_db"] > 40
    healthy = save_converted(Scaled(1.0), (x,), tmp_path / "healthy.mlpackage", "fp16")
    fine = evaluate(healthy, {"x0": x.numpy()})
    assert not fine.fp16_overflows and fine.first_non_finite is None
    assert 0 < fine.fp16_peak["max_abs"] < 65504


def test_enumerated_shapes_each_evaluate_and_others_are_refused(tmp_path):
    module = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    program = save_converted(
        module, (torch.randn(1, 2, 3),), tmp_path / "flex.mlpackage", "fp32", enumerated=[2, 5, 9]
    )
    assert program.inputs["x0"].enumerated == [(1, 2, 3), (1, 5, 3), (1, 9, 3)]
    for n in (2, 5, 9):
        x = torch.randn(1, n, 3)
        [(actual, expected)], _ = run_both(module, (x,), program)
        assert compare(actual, expected)["rel"] < 1e-6
    with pytest.raises(UsageError, match=r"not one of the enumerated shapes"):
        evaluate(program, {"x0": np.zeros((1, 4, 3), np.float32)})


def test_unknown_op_is_named(tmp_path):
    class Cumulative(nn.Module):
        def forward(self, x):
            return torch.cumsum(x, dim=1)

    program = save_converted(Cumulative(), (torch.randn(1, 5),), tmp_path / "cumsum.mlpackage")
    with pytest.raises(UnsupportedOpError, match="cumsum"):
        evaluate(program, {"x0": np.zeros((1, 5), np.float32)})


@pytest.mark.parametrize("min_target", ["iOS16", "iOS18"])
@pytest.mark.parametrize("mode", ["int8", "palettize4"])
def test_weight_decompression_matches_coremltools(tmp_path, mode, min_target):
    """Our constexpr ops against coremltools' own decompression of the same saved ops."""
    module = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.GELU(), nn.Conv2d(32, 16, 1))
    x = torch.randn(1, 16, 12, 12)
    traced = coreml_export.trace(module.eval(), (x,))
    mlmodel = coreml_export.convert(
        traced, [coreml_export.tensor_input("x0", (1, 16, 12, 12))], ["y0"], "fp16", min_target
    )
    coreml_compress.compress(mlmodel, compression(mode), {}, None, []).save(str(tmp_path / "c.mlpackage"))
    program = load_program(tmp_path / "c.mlpackage")
    assert_constexpr_ops_match_coremltools(program)
    with torch.no_grad():
        r = compare(evaluate(program, {"x0": x.numpy()}).outputs["y0"], module(x).numpy())
    assert r["cosine"] > (0.999 if mode == "int8" else 0.98), r


def test_unreadable_package_is_one_line(tmp_path):
    module, x = Scaled(1.0), torch.randn(1, 4, 8, 8)
    path = tmp_path / "p.mlpackage"
    save_converted(module, (x,), path)
    weights = next(path.rglob("weight.bin"))
    weights.write_bytes(weights.read_bytes()[:64])
    with pytest.raises(UsageError, match="cannot be read back") as info:
        load_program(path)
    assert "\n" not in str(info.value)
    with pytest.raises(UsageError, match="is missing"):
        load_program(tmp_path / "missing.mlpackage")


class Sampling(nn.Module):
    """RAP-SAM's resampling (grid sampling for deformable convolution, bilinear upsampling, max pooling) and
    the nearest-neighbour upsampling of EdgeTAM's FPN neck."""

    def forward(self, x, grid):
        taps = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        loose = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        up = F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)
        nearest = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return taps, loose, up, F.max_pool2d(x, 3, 2, 1), nearest


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_resampling_ops_match_pytorch(tmp_path, precision):
    """Sampling positions reach 1.5 pixels outside the image on every side (zeros there)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 9, 13, generator=g)
    grid = torch.rand(1, 7, 11, 2, generator=g) * 2.6 - 1.3
    program = save_converted(Sampling(), (x, grid), tmp_path / "sampling.mlpackage", precision)
    assert {"resample", "upsample_bilinear", "max_pool", "upsample_nearest_neighbor"} <= set(
        program.op_types()
    )
    pairs, _ = run_both(Sampling(), (x, grid), program)
    for actual, expected in pairs:
        r = compare(actual, expected)
        assert r["rel"] < 1e-5 if precision == "fp32" else r["psnr_db"] > 45, r
