"""The export-target interface and registry: ONNX and Core ML today; a new target (LiteRT,
ExecuTorch, ...) is one module with an `ExportTarget` subclass plus one line in `TARGET_MODULES`."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Dict, Tuple

if TYPE_CHECKING:  # kept out of the import so that option parsing does not load torch
    from torch import nn

    from ..console import Progress
    from ..families import DecoderSignature
    from ..registry import ModelSpec
    from .options import ConvertOptions
    from .reference import Reference

TARGET_MODULES = ("samexport.export.onnx_target", "samexport.export.coreml_target")


@dataclass
class ExportJob:
    """Everything a target needs for one model: the official model (the reference computation), its
    reparameterized copy (what is exported), the decoder signature and where to write."""

    spec: "ModelSpec"
    options: "ConvertOptions"
    model: "nn.Module"
    fused: "nn.Module"
    reference: "Reference"
    signature: "DecoderSignature"
    checkpoint_sha256: str
    progress: "Progress"


class ExportTarget(ABC):
    """Writes a model's encoder and decoder in one format and checks them against PyTorch."""

    name: ClassVar[str]  # --target value and manifest section
    title: ClassVar[str]
    compressions: ClassVar[Tuple[str, ...]]  # --compress values this target implements

    @abstractmethod
    def artifact_names(self, spec: "ModelSpec", options: "ConvertOptions") -> Dict[str, str]:
        """File names, keyed `<target>_encoder` and `<target>_decoder`."""

    def check_options(self, spec: "ModelSpec", options: "ConvertOptions") -> None:  # noqa: B027 (optional hook)
        """Refuse, before any work, what this target cannot write."""

    @abstractmethod
    def export(self, job: "ExportJob", paths: Dict[str, Path]) -> Tuple[Dict, Dict]:
        """Write the files at `paths` (keys as in `artifact_names`) and check them; returns this target's
        manifest section and its validation report. Raises SamExportError when a check fails."""


_TARGETS: Dict[str, ExportTarget] = {}


def register_target(cls: type) -> type:
    if cls.name in _TARGETS:
        raise ValueError(f"export target {cls.name!r} is registered twice")
    _TARGETS[cls.name] = cls()
    return cls


def targets() -> Dict[str, ExportTarget]:
    """name -> target, in registration order (importing a target module registers it)."""
    for module in TARGET_MODULES:
        importlib.import_module(module)
    return _TARGETS
