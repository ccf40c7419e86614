"""A NumPy evaluator for saved Core ML ML programs: check a package's numerics without a Mac."""

from .evaluate import PRECISIONS, Evaluation, UnsupportedOpError, evaluate
from .program import MilProgram, load_program
from .registry import OPS


def supported_ops() -> list:
    return sorted(OPS)


__all__ = [
    "Evaluation",
    "MilProgram",
    "OPS",
    "PRECISIONS",
    "UnsupportedOpError",
    "evaluate",
    "load_program",
    "supported_ops",
]
