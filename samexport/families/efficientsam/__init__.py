"""The EfficientSAM family (EfficientSAM-Ti, -S): its conventions, parts and model rows."""

from . import models
from .family import EFFICIENT_SAM, EfficientSamFamily

__all__ = ["EFFICIENT_SAM", "EfficientSamFamily", "models"]
