"""Model families registered by name: a second registration of a name and an unknown name are errors."""

from __future__ import annotations

from typing import Dict

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
