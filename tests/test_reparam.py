"""Reparameterization: fused models compute what unfused ones do, with BatchNorm gone."""

from __future__ import annotations

import copy

import torch
from torch import nn

import samexport
from helpers import build_quiet, rel_err
from samexport.checkpoint import random_state_dict
from samexport.modeling.common import Conv2d_BN
from samexport.modeling.repvit import RepVGGDW, Residual


def randomize(module: nn.Module, salt: str = "bn-stats") -> nn.Module:
    """Random BatchNorm statistics (running_var in [1.1, 2.1), nonzero means), not the identity defaults."""
    module.load_state_dict(random_state_dict(module, salt))
    return module.eval()


def test_repvgg_dw_fuses_to_one_conv():
    block = randomize(RepVGGDW(16))
    fused = block.fuse()
    assert isinstance(fused, nn.Conv2d) and fused.kernel_size == (3, 3) and fused.groups == 16
    x = torch.randn(2, 16, 12, 12, generator=torch.Generator().manual_seed(0))
    assert rel_err(fused(x), block(x)) < 1e-5


def test_conv_bn_and_residual_dw_fuse():
    conv_bn = randomize(Conv2d_BN(8, 8, 3, 1, 1, groups=8))
    residual = Residual(conv_bn)
    x = torch.randn(1, 8, 10, 10, generator=torch.Generator().manual_seed(0))
    assert rel_err(conv_bn.fuse()(x), conv_bn(x)) < 1e-5
    fused = residual.fuse()
    assert isinstance(fused, nn.Conv2d)
    assert rel_err(fused(x), residual(x)) < 1e-5
    sequential = Residual(nn.Sequential(conv_bn, nn.GELU()))
    assert sequential.fuse() is sequential  # not foldable: the walker fuses its children instead


def test_repvit_encoder_fused_equals_unfused():
    model = build_quiet("repvit")  # the parity fill: random BatchNorm statistics
    original = {k: v.clone() for k, v in model.state_dict().items()}
    fused = samexport.reparameterize_model(model)
    x = torch.randn(
        1, 3, 256, 256, generator=torch.Generator().manual_seed(0)
    )  # any multiple of 16 works for the CNN
    with torch.no_grad():
        assert rel_err(fused.image_encoder(x), model.image_encoder(x)) < 1e-5
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert fused.num_fused_modules > 0
    # the original model is untouched
    assert any(isinstance(m, RepVGGDW) for m in model.modules())
    assert all(torch.equal(original[k], v) for k, v in model.state_dict().items())
    # fusing again changes nothing
    twice = samexport.reparameterize_model(fused)
    assert twice.num_fused_modules == 0
    with torch.no_grad():
        assert torch.equal(twice.image_encoder(x), fused.image_encoder(x))


def test_repvit_fold_is_exact_for_any_bn_statistics():
    """The fold itself is exact (checked in float64). In float32, with these other statistics the
    54 blocks amplify rounding so much that fused and unfused each land 1e-5..4e-4 from the exact
    result, in either order, so the fp32 bar above is stated on the fixture weights."""
    model = build_quiet("repvit")
    randomize(model.image_encoder, salt="other-bn-stats")
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        exact = copy.deepcopy(model.image_encoder).double()(x.double())
        fused64 = samexport.reparameterize_model(copy.deepcopy(model).double()).image_encoder(x.double())
    assert rel_err(fused64, exact) < 1e-10


def test_tinyvit_fused_equals_unfused():
    model = build_quiet("tinyvit")
    fused = samexport.reparameterize_model(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(0))  # TinyViT only takes 1024
    with torch.no_grad():
        assert rel_err(fused.image_encoder(x), model.image_encoder(x)) < 1e-5


def test_efficient_sam_deploy_form_freezes_the_position_embedding():
    model = build_quiet("efficientsam_ti")
    fused = samexport.reparameterize_model(model)
    assert model.image_encoder.frozen_pos_embed is None
    frozen = fused.image_encoder.frozen_pos_embed
    assert frozen is not None and tuple(frozen.shape) == (1, 64, 64, 192)
    assert torch.equal(frozen, model.image_encoder.resized_pos_embed())
