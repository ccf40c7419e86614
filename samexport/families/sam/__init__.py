"""The SAM family (RepViT-SAM, MobileSAM, SAM ViT-B/L/H): its conventions, parts and model rows."""

from . import models
from .family import SAM, SamDecoderForExport, SamFamily

__all__ = ["SAM", "SamDecoderForExport", "SamFamily", "models"]
