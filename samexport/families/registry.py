"""The registries: model families by name, and the model zoo (one named config per supported model, as in
timm's registry; each family package registers its rows beside its definition). A second registration of a
name or alias and an unknown name are errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Tuple

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import UsageError
from .base import Family

FAMILIES: Dict[str, Family] = {}


def register_family(family: Family) -> Family:
    if family.name in FAMILIES:
        raise ValueError(f"model family {family.name!r} is registered twice")
    FAMILIES[family.name] = family
    return family


def unregister_family(name: str) -> None:
    FAMILIES.pop(name)


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise UsageError(
            f"unknown model family {name!r}; this samexport knows: {', '.join(FAMILIES)} "
            "(written by a newer samexport? upgrade)"
        ) from None


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
