"""Building registry models with official checkpoints or the deterministic fixture fill."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import List, Tuple

import torch
from torch import nn

from .checkpoint import load_checkpoint, random_state_dict
from .registry import get_spec


class RandomWeightsWarning(UserWarning):
    """Raised as a warning when a model is built without a checkpoint."""


def build_model(name: str, checkpoint: str | Path | None = None) -> nn.Module:
    """A registry model in eval mode, with an official checkpoint or deterministic random weights;
    `model.spec` is its registry row."""
    spec = get_spec(name)
    with torch.device("cpu"):
        model = spec.build()
    if checkpoint is None:
        model.load_state_dict(random_state_dict(model), strict=True)
        warnings.warn(
            f"no checkpoint for {spec.name}: using deterministic random weights; masks will be "
            f"meaningless but latency is valid (official file: {spec.checkpoint_file})",
            RandomWeightsWarning,
            stacklevel=2,
        )
    else:
        load_checkpoint(model, checkpoint, spec)
    model.spec = spec
    return model.eval()


def build_model_noting(name: str, checkpoint: str | Path | None = None) -> Tuple[nn.Module, List[str]]:
    """`build_model`, with the random-weights warning returned as text (for a command to print) instead
    of raised as a warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RandomWeightsWarning)
        model = build_model(name, checkpoint)
    return model, [str(w.message) for w in caught if issubclass(w.category, RandomWeightsWarning)]
