"""Static facts about a registry model: parameter counts, GMACs, sizes, shapes, input contract.

Everything is computed on the meta device (shapes only, no weights, no arithmetic). Parameter
counts alone (`model_params`, for `samexport list`) skip the FLOP counting.
"""

from __future__ import annotations

from typing import Dict

import torch
from torch.utils.flop_counter import FlopCounterMode

from .families.registry import get_spec


def _gmacs(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 2e9


def model_params(name: str) -> Dict[str, int]:
    """Encoder, decoder and total parameter counts."""
    spec = get_spec(name)
    return spec.family.param_counts(spec.build_meta())


def model_info(name: str) -> Dict:
    spec = get_spec(name)
    family = spec.family
    model = spec.build_meta().eval()
    model.spec = spec
    with torch.device("meta"):
        facts = family.model_facts(model, _gmacs)
    return {
        "name": spec.name,
        "title": spec.title,
        "family": family.name,
        "summary": spec.summary,
        "artifact_stem": spec.artifact_stem,
        "params": family.param_counts(model),
        **facts,
        "checkpoint": {"file": spec.checkpoint_file, "source": spec.checkpoint_source},
        "input_contract": family.input_contract(),
    }
