"""The RAP-SAM family's model: RAP-SAM R50."""

from __future__ import annotations

from ...modeling import ResNet50
from ..registry import ModelSpec, register_model
from .family import RAPSAM

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
