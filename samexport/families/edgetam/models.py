"""The EdgeTAM family's model: EdgeTAM (RepViT-M1 + spatial perceiver)."""

from __future__ import annotations

from ...modeling.timm_repvit import RepVitTrunk
from ..registry import ModelSpec, register_model
from .family import EDGETAM

register_model(
    ModelSpec(
        name="edgetam",
        title="EdgeTAM",
        artifact_stem="EdgeTAM",
        family=EDGETAM,
        encoder=RepVitTrunk,
        checkpoint_file="edgetam.pt",
        checkpoint_source="facebookresearch/EdgeTAM (checkpoints/edgetam.pt, {'model': state_dict})",
        summary="SAM 2's video tracker on RepViT-M1 with a spatial perceiver over its memories (video)",
    )
)
