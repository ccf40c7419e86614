"""The RAP-SAM family (RAP-SAM R50): its conventions, parts, pipelines (prompts, panoptic, near-online
video instances) and model row."""

from . import models
from .family import RAPSAM, RapSamFamily

__all__ = ["RAPSAM", "RapSamFamily", "models"]
