"""Building registry models with official checkpoints or the deterministic fixture fill."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import List, Tuple

import torch
from torch import nn

from .checkpoint import load_checkpoint, random_fill, random_state_dict
from .errors import UsageError
from .registry import get_spec


class RandomWeightsWarning(UserWarning):
    """Raised as a warning when a model is built without a checkpoint."""


def build_model(name: str, checkpoint: str | Path | None = None, **extras) -> nn.Module:
    """A registry model in eval mode, with an official checkpoint or the fixture weights;
    `model.spec` is its registry row. `extras` are the family's other files by name (RAP-SAM:
    `classifier`, the open-vocabulary class embeddings), filled like the weights when absent."""
    spec = get_spec(name)
    unknown = sorted(set(extras) - set(spec.family.extras))
    if unknown:
        takes = ", ".join(spec.family.extras) or "only a checkpoint"
        raise UsageError(f"{spec.name} does not take {', '.join(unknown)} (it takes: {takes})")
    with torch.device("cpu"):
        model = spec.build()
    spec.family.load_extras(model, random_fill if checkpoint is None else None, **extras)
    if checkpoint is None:
        model.load_state_dict(random_state_dict(model), strict=True)
        warnings.warn(
            f"no checkpoint for {spec.name}: using the fixture weights (the parity fixtures' deterministic "
            f"fill); masks will be meaningless but latency is valid (official file: {spec.checkpoint_file})",
            RandomWeightsWarning,
            stacklevel=2,
        )
    else:
        load_checkpoint(model, checkpoint, spec)
    model.spec = spec
    return model.eval()


def build_model_noting(
    name: str, checkpoint: str | Path | None = None, **extras
) -> Tuple[nn.Module, List[str]]:
    """`build_model`, with the random-weights warning returned as text (for a command to print) instead
    of raised as a warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RandomWeightsWarning)
        model = build_model(name, checkpoint, **extras)
    return model, [str(w.message) for w in caught if issubclass(w.category, RandomWeightsWarning)]
