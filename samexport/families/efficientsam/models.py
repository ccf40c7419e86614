"""The EfficientSAM family's models: EfficientSAM-Ti and -S."""

from __future__ import annotations

from ...modeling import EfficientSamImageEncoder
from ..registry import ModelSpec, register_model
from .family import EFFICIENT_SAM

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
