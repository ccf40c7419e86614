"""The model zoo: one named config per supported model, as in timm's registry.

A row names its family (the type that owns the decoder/prompt conventions, see `families`) and
how to build its image encoder; registering a name or alias twice is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Tuple

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .errors import UsageError
from .families import EFFICIENT_SAM, RAPSAM, SAM, Family
from .modeling import EfficientSamImageEncoder, ImageEncoderViT, RepViT, ResNet50, TinyViT


@dataclass(frozen=True)
class ModelSpec:
    """A registry row: names, family, encoder builder and the official checkpoint it loads."""

    name: str
    title: str
    artifact_stem: (
        str  # the stem of every exported file name (every target) and of the Swift classes Xcode generates
    )
    family: Family
    encoder: Callable[[], nn.Module]
    checkpoint_file: str  # official file name
    checkpoint_source: str
    summary: str
    aliases: Tuple[str, ...] = field(default_factory=tuple)

    def build(self) -> nn.Module:
        return self.family.build(self.encoder())

    def build_meta(self) -> nn.Module:
        """The model on the meta device (shapes only), for layouts, parameter counts and FLOPs."""
        with torch.device("meta"), _NoRandomInit():
            return self.build()


class _NoRandomInit(TorchFunctionMode):
    """Skips in-place random initialisation: a meta tensor has no values to fill, and torch imports its
    compiler stack (seconds) the first time such a fill runs on the meta device."""

    FILLS = {
        torch.Tensor.normal_,
        torch.Tensor.uniform_,
        nn.init.normal_,
        nn.init.uniform_,
        nn.init.trunc_normal_,
        nn.init.kaiming_uniform_,
        nn.init.kaiming_normal_,
        nn.init.xavier_uniform_,
        nn.init.xavier_normal_,
    }

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.FILLS:
            return args[0] if args else next(iter((kwargs or {}).values()))
        return func(*args, **(kwargs or {}))


_SPECS: Dict[str, ModelSpec] = {}
_BY_NAME: Dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    for key in (spec.name, *spec.aliases):
        if key in _BY_NAME:
            raise ValueError(f"model name {key!r} is registered twice")
    _SPECS[spec.name] = spec
    for key in (spec.name, *spec.aliases):
        _BY_NAME[key] = spec
    return spec


def unregister_model(name: str) -> None:
    spec = _SPECS.pop(name)
    for key in (spec.name, *spec.aliases):
        del _BY_NAME[key]


def list_models() -> List[str]:
    """Registry names, in table order (aliases excluded)."""
    return list(_SPECS)


def get_spec(name: str) -> ModelSpec:
    try:
        return _BY_NAME[name.lower()]
    except (KeyError, AttributeError):
        aliases = [f"{a} = {s.name}" for s in _SPECS.values() for a in s.aliases]
        raise UsageError(
            f"unknown model {name!r}; choose one of: {', '.join(list_models())}"
            + (f" (aliases: {', '.join(aliases)})" if aliases else "")
        ) from None


def _sam_vit(embed_dim: int, depth: int, heads: int, global_idx: Tuple[int, ...]) -> Callable[[], nn.Module]:
    return lambda: ImageEncoderViT(embed_dim, depth, heads, global_idx)


SAM_CHECKPOINTS = "facebookresearch/segment-anything model checkpoints"

register_model(
    ModelSpec(
        name="repvit",
        title="RepViT-SAM",
        artifact_stem="RepViTSAM",
        family=SAM,
        encoder=RepViT,
        checkpoint_file="repvit_sam.pt",
        checkpoint_source="THU-MIG/RepViT releases (RepViT-SAM)",
        summary="RepViT-M2.3 CNN encoder, stride-1 last downsample, SAM decoder",
    )
)
register_model(
    ModelSpec(
        name="tinyvit",
        title="MobileSAM",
        artifact_stem="MobileSAM",
        family=SAM,
        encoder=TinyViT,
        checkpoint_file="mobile_sam.pt",
        checkpoint_source="ChaoningZhang/MobileSAM, weights/mobile_sam.pt",
        summary="TinyViT-5M encoder distilled from SAM ViT-H, SAM decoder",
        aliases=("mobilesam",),
    )
)
register_model(
    ModelSpec(
        name="efficientsam_ti",
        title="EfficientSAM-Ti",
        artifact_stem="EfficientSAMTi",
        family=EFFICIENT_SAM,
        encoder=lambda: EfficientSamImageEncoder(192, 12, 3),
        checkpoint_file="efficient_sam_vitt.pt",
        checkpoint_source="yformer/EfficientSAM, weights/efficient_sam_vitt.pt",
        summary="ViT-Ti encoder (SAMI-pretrained), EfficientSAM prompt encoder and decoder",
    )
)
register_model(
    ModelSpec(
        name="efficientsam_s",
        title="EfficientSAM-S",
        artifact_stem="EfficientSAMS",
        family=EFFICIENT_SAM,
        encoder=lambda: EfficientSamImageEncoder(384, 12, 6),
        checkpoint_file="efficient_sam_vits.pt",
        checkpoint_source="yformer/EfficientSAM, weights/efficient_sam_vits.pt.zip (unzip it)",
        summary="ViT-S encoder (SAMI-pretrained), EfficientSAM prompt encoder and decoder",
    )
)
register_model(
    ModelSpec(
        name="sam_vit_b",
        title="SAM ViT-B",
        artifact_stem="SAMViTB",
        family=SAM,
        encoder=_sam_vit(768, 12, 12, (2, 5, 8, 11)),
        checkpoint_file="sam_vit_b_01ec64.pth",
        checkpoint_source=SAM_CHECKPOINTS,
        summary="original SAM, ViT-B encoder (heavy baseline)",
    )
)
register_model(
    ModelSpec(
        name="sam_vit_l",
        title="SAM ViT-L",
        artifact_stem="SAMViTL",
        family=SAM,
        encoder=_sam_vit(1024, 24, 16, (5, 11, 17, 23)),
        checkpoint_file="sam_vit_l_0b3195.pth",
        checkpoint_source=SAM_CHECKPOINTS,
        summary="original SAM, ViT-L encoder",
    )
)
register_model(
    ModelSpec(
        name="sam_vit_h",
        title="SAM ViT-H",
        artifact_stem="SAMViTH",
        family=SAM,
        encoder=_sam_vit(1280, 32, 16, (7, 15, 23, 31)),
        checkpoint_file="sam_vit_h_4b8939.pth",
        checkpoint_source=SAM_CHECKPOINTS,
        summary="original SAM, ViT-H encoder (the teacher of MobileSAM)",
    )
)
register_model(
    ModelSpec(
        name="rapsam_r50",
        title="RAP-SAM R50",
        artifact_stem="RAPSAMR50",
        family=RAPSAM,
        encoder=ResNet50,
        checkpoint_file="rapsam_r50_12e.pth",
        checkpoint_source="xushilin1/RAP-SAM releases (rapsam_r50_12e.pth); the classifier is separate",
        summary="ResNet-50 + deformable neck, one query head for prompts and panoptic (all-purpose)",
        aliases=("rapsam",),
    )
)
