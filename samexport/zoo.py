"""Building registry models with official checkpoints or the deterministic fixture fill."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import List, Tuple

import torch
from torch import nn

from .checkpoint import load_checkpoint, random_fill, random_state_dict
from .errors import UsageError
from .families.registry import get_spec
from .parts import PartForm
from .runtime import Session, TorchRunner


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


def torch_session(
    name: str,
    checkpoint: str | Path | None = None,
    input_size: Tuple[int, int] | None = None,
    **extras,
) -> Tuple[Session, List[str]]:
    """A PyTorch session of a registry model: every part the family exports, as the official model's own
    modules, and the random-weights notes. The modules take any input size: the family's pipelines choose
    the official one, or letterbox into `input_size` (h, w) as they do for an export of that size."""
    model, notes = build_model_noting(name, checkpoint, **extras)
    source = str(checkpoint) if checkpoint else "fixture weights"
    return model_session(model, input_size, source), notes


def model_session(model: nn.Module, input_size: Tuple[int, int] | None = None, source: str = "") -> Session:
    """The PyTorch session of a built zoo model (`model.spec`): a runner per part over its own modules."""
    family = model.spec.family
    form = PartForm(packed_prompts=False, image_input=False, dynamic=True)
    shapes = family.session_shapes(input_size)
    interfaces = family.part_interfaces(shapes, form)
    unavailable = family.unavailable_parts(model)
    runners = {
        part: TorchRunner(module(), interfaces[part].output_names, interfaces[part].input_names)
        for part, module in family.part_modules(model, form).items()
        if part not in unavailable
    }
    return Session(
        "torch", model.spec.name, interfaces, runners, input_size, source, shapes, form, unavailable
    )
