"""The SAM family's models: RepViT-SAM, MobileSAM and SAM ViT-B/L/H."""

from __future__ import annotations

from typing import Callable, Tuple

from torch import nn

from ...modeling import ImageEncoderViT, RepViT, TinyViT
from ..registry import ModelSpec, register_model
from .family import SAM


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
