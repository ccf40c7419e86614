"""samexport: Segment Anything models, reparameterized and exported to Core ML and ONNX.

    import samexport
    m = samexport.build_model("repvit", checkpoint="models/repvit_sam.pt")
    emb = m.image_encoder(m.preprocess(image))
    low_res_masks, iou = m.decode(emb, coords, labels)
    fused = samexport.reparameterize_model(m)
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from .checkpoint import load_checkpoint, random_state_dict
from .errors import SamExportError
from .registry import get_spec, list_models
from .reparam import reparameterize_model

__version__ = "0.1.0"

__all__ = ["RandomWeightsWarning", "SamExportError", "__version__", "build_model", "get_spec",
           "list_models", "reparameterize_model"]


class RandomWeightsWarning(UserWarning):
    """Raised as a warning when a model is built without a checkpoint."""


def build_model(name: str, checkpoint: str | Path | None = None) -> nn.Module:
    """Build a registry model in eval mode, with an official checkpoint or deterministic random weights."""
    spec = get_spec(name)
    with torch.device("cpu"):
        model = spec.build()
    if checkpoint is None:
        model.load_state_dict(random_state_dict(model), strict=True)
        warnings.warn(f"no checkpoint for {spec.name}: using deterministic random weights; masks will be "
                      f"meaningless but latency is valid (official file: {spec.checkpoint_file})",
                      RandomWeightsWarning, stacklevel=2)
    else:
        load_checkpoint(model, checkpoint, spec)
    model.spec = spec
    return model.eval()
