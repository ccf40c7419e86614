"""Model families: one package per family (`families/<family>/`: its conventions, parts, pipelines and model
rows, registered beside their definitions), over the base every family shares (base.py) and the registries
(registry.py). The packages are imported in table order: the zoo lists models in the order they register."""

from importlib import import_module

from .base import EncoderForExport, Family, PromptFamily
from .registry import FAMILIES, get_family, register_family, unregister_family
from .sam_style import DecoderForExport, DecoderSignature

FAMILY_PACKAGES = ("sam", "efficientsam", "rapsam", "edgetam")
for _package in FAMILY_PACKAGES:
    import_module(f"{__name__}.{_package}")

__all__ = [
    "DecoderForExport",
    "DecoderSignature",
    "EncoderForExport",
    "FAMILIES",
    "FAMILY_PACKAGES",
    "Family",
    "PromptFamily",
    "get_family",
    "register_family",
    "unregister_family",
]
