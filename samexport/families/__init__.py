"""Model families: one type per decoder/prompt convention (see base.py), registered by name."""

from .base import DecoderForExport, DecoderSignature, EncoderForExport, Family
from .efficientsam import EFFICIENT_SAM
from .rapsam import RAPSAM
from .registry import FAMILIES, get_family, register_family, unregister_family
from .sam import SAM

__all__ = [
    "DecoderForExport",
    "DecoderSignature",
    "EFFICIENT_SAM",
    "EncoderForExport",
    "FAMILIES",
    "RAPSAM",
    "Family",
    "SAM",
    "get_family",
    "register_family",
    "unregister_family",
]
