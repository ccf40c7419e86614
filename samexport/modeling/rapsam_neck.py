"""RAP-SAM's neck (`YOSONeck` with `LiteDeformConv`): C2..C5 -> mask features at stride 4.

Keys as in the official checkpoint under `neck.`: `deconv.*` (lateral convs, deformable layers,
cross-scale aggregation) and `loc_conv`.
"""

from __future__ import annotations

import copy
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .deform_conv import ModulatedDeformConv2d


class DeformLayer(nn.Module):
    """(B, C, H, W) -> (B, O, 2H, 2W): DCNv2 3x3 (offsets and mask from a 3x3 conv) -> BN -> ReLU ->
    ConvTranspose2d(4, stride 2, pad 1) -> BN -> ReLU."""

    def __init__(self, in_planes: int, out_planes: int) -> None:
        super().__init__()
        self.dcn_offset = nn.Conv2d(in_planes, 27, 3, padding=1)
        self.dcn = ModulatedDeformConv2d(in_planes, out_planes)
        self.dcn_bn = nn.BatchNorm2d(out_planes)
        self.up_sample = nn.ConvTranspose2d(out_planes, out_planes, 4, stride=2, padding=1, bias=False)
        self.up_bn = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset_mask = self.dcn_offset(x)
        x = self.dcn(x, offset_mask[:, :18], offset_mask[:, 18:].sigmoid())
        x = self.relu(self.dcn_bn(x))
        return self.relu(self.up_bn(self.up_sample(x)))

    @torch.no_grad()
    def fuse(self) -> "DeformLayer":
        """A copy with both BatchNorms folded (into the deformable weights and the transposed conv)."""
        fused = copy.deepcopy(self)
        scale = self.dcn_bn.weight.double() / torch.sqrt(self.dcn_bn.running_var.double() + self.dcn_bn.eps)
        fused.dcn.weight.copy_(self.dcn.weight.double() * scale.view(-1, 1, 1, 1))
        shift = self.dcn_bn.bias.double() - self.dcn_bn.running_mean.double() * scale
        fused.dcn_bn = _ChannelBias(shift.float())
        up_scale = self.up_bn.weight.double() / torch.sqrt(self.up_bn.running_var.double() + self.up_bn.eps)
        up = nn.ConvTranspose2d(
            self.up_sample.in_channels, self.up_sample.out_channels, 4, stride=2, padding=1, bias=True
        )
        # ConvTranspose2d weights are (in, out, kh, kw): the output channel is dimension 1
        up.weight.copy_(self.up_sample.weight.double() * up_scale.view(1, -1, 1, 1))
        up.bias.copy_(self.up_bn.bias.double() - self.up_bn.running_mean.double() * up_scale)
        fused.up_sample, fused.up_bn = up, nn.Identity()
        return fused


class _ChannelBias(nn.Module):
    """x + bias per channel (what a folded BatchNorm leaves after a bias-free convolution)."""

    def __init__(self, bias: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("bias", bias.view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class LiteDeformConv(nn.Module):
    """C2..C5 -> (B, agg_dim, H/4, W/4): top-down deformable path plus cross-scale aggregation."""

    def __init__(self, agg_dim: int, backbone_channels: Sequence[int]) -> None:
        super().__init__()
        c2, c3, c4, c5 = backbone_channels
        self.lateral_conv0 = nn.Conv2d(c5, c5 // 2, 1)
        self.deform_conv1 = DeformLayer(c5 // 2, c4 // 2)
        self.lateral_conv1 = nn.Conv2d(c4, c4 // 2, 1)
        self.deform_conv2 = DeformLayer(c4 // 2, c3 // 2)
        self.lateral_conv2 = nn.Conv2d(c3, c3 // 2, 1)
        self.deform_conv3 = DeformLayer(c3 // 2, c2 // 2)
        self.lateral_conv3 = nn.Conv2d(c2, c2 // 2, 1)
        self.output_conv = nn.Conv2d(agg_dim, agg_dim, 3, padding=1)
        self.bias = nn.Parameter(torch.zeros(1, agg_dim, 1, 1))
        self.conv_a5 = nn.Conv2d(c5 // 2, agg_dim, 1, bias=False)
        self.conv_a4 = nn.Conv2d(c4 // 2, agg_dim, 1, bias=False)
        self.conv_a3 = nn.Conv2d(c3 // 2, agg_dim, 1, bias=False)
        self.conv_a2 = nn.Conv2d(c2 // 2, agg_dim, 1, bias=False)

    def forward(self, features: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        c2, c3, c4, c5 = features
        x5 = self.lateral_conv0(c5)
        x4 = self.lateral_conv1(c4) + self.deform_conv1(x5)
        x3 = self.lateral_conv2(c3) + self.deform_conv2(x4)
        x2 = self.lateral_conv3(c2) + self.deform_conv3(x3)
        x = (
            _upsample(self.conv_a5(x5), 8)
            + _upsample(self.conv_a4(x4), 4)
            + _upsample(self.conv_a3(x3), 2)
            + self.conv_a2(x2)
            + self.bias
        )
        return self.output_conv(x)


def _upsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


class YosoNeck(nn.Module):
    """C2..C5 -> mask features (B, 256, H/4, W/4): aggregation, then [x, y] coordinate channels
    (each linspace(-1, 1)) and a 1x1 conv."""

    def __init__(
        self, agg_dim: int = 128, hidden_dim: int = 256, backbone_channels=(256, 512, 1024, 2048)
    ) -> None:
        super().__init__()
        self.deconv = LiteDeformConv(agg_dim, backbone_channels)
        self.loc_conv = nn.Conv2d(agg_dim + 2, hidden_dim, 1)

    def forward(self, features: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        x = self.deconv(features)
        b, _, h, w = x.shape
        # repeat, not expand: LiteRT's converter lowers an expanded constant to a BROADCAST_TO whose shape it
        # does not move to NHWC, which the interpreter refuses (the values are the same)
        xs = torch.linspace(-1, 1, w, dtype=x.dtype, device=x.device).view(1, 1, 1, w).repeat(b, 1, h, 1)
        ys = torch.linspace(-1, 1, h, dtype=x.dtype, device=x.device).view(1, 1, h, 1).repeat(b, 1, 1, w)
        return self.loc_conv(torch.cat([x, xs, ys], dim=1))
