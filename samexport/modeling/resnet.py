"""ResNet-50 (mmdet `ResNet(depth=50, style='pytorch')`, eval-mode BatchNorm): RAP-SAM's backbone.

Keys follow torchvision/mmdet (`conv1`, `bn1`, `layer1.0.conv1`, `layer1.0.downsample.0`, ...).
"""

from __future__ import annotations

import copy
from typing import Tuple

import torch
from torch import nn

from .common import fuse_conv_bn

RESNET50_BLOCKS = (3, 4, 6, 3)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (carries the stride, 'pytorch' style) -> 1x1 (x4 channels), each with BN; residual."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)

    @torch.no_grad()
    def fuse(self) -> "Bottleneck":
        """A copy with every BatchNorm folded into the convolution before it."""
        fused = copy.deepcopy(self)
        for conv, bn in (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")):
            setattr(fused, conv, fuse_conv_bn(getattr(self, conv), getattr(self, bn)))
            setattr(fused, bn, nn.Identity())
        if self.downsample is not None:
            fused.downsample = fuse_conv_bn(self.downsample[0], self.downsample[1])
        return fused


class ResNet50(nn.Module):
    """(1, 3, H, W) -> C2 (256, H/4), C3 (512, H/8), C4 (1024, H/16), C5 (2048, H/32)."""

    out_channels = (256, 512, 1024, 2048)

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for index, blocks in enumerate(RESNET50_BLOCKS):
            planes = 64 * 2**index
            stride = 1 if index == 0 else 2
            layers = []
            for block in range(blocks):
                layers.append(Bottleneck(inplanes, planes, stride if block == 0 else 1))
                inplanes = planes * Bottleneck.expansion
            self.add_module(f"layer{index + 1}", nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            features.append(x)
        return tuple(features)

    @torch.no_grad()
    def fuse(self) -> "ResNet50":
        """A copy with the stem's BatchNorm folded (the blocks fuse themselves in the walk)."""
        fused = copy.copy(self)
        fused._modules = dict(self._modules)
        fused.conv1 = fuse_conv_bn(self.conv1, self.bn1)
        fused.bn1 = nn.Identity()
        return fused
