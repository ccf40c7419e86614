"""The export-target interface and registry: ONNX and Core ML today; a new target (LiteRT,
ExecuTorch, ...) is one module with an `ExportTarget` subclass plus one line in `TARGET_MODULES`.

What a family exports is its *layout* (`Family.export_layout`): SAM-style families export an
encoder and a prompt decoder (`sam_layout`), RAP-SAM an encoder, a prompt decoder and a panoptic
head (`rapsam_layout`). A layout owns the decoder signature, the PyTorch reference and the
manifest's prompt section; each target is registered for one layout under its --target name."""

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

TARGET_MODULES = (
    "samexport.export.sam_layout",
    "samexport.export.onnx_target",
    "samexport.export.coreml_target",
    "samexport.export.rapsam_layout",
)


@dataclass
class ExportJob:
    """Everything a target needs for one model: the official model (the reference computation), its
    reparameterized copy (what is exported), the decoder signature and where to write."""

    spec: "ModelSpec"
    options: "ConvertOptions"
    model: "nn.Module"
    fused: "nn.Module"
    reference: "Reference"
    signature: "DecoderSignature"  # the layout's signature type
    checkpoint_sha256: str
    progress: "Progress"


class ExportTarget(ABC):
    """Writes a model's encoder and decoder in one format and checks them against PyTorch."""

    name: ClassVar[str]  # --target value and manifest section
    title: ClassVar[str]
    layout: ClassVar[str] = "sam"  # the export layout (see the module docstring) this target writes
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


class ExportLayout(ABC):
    """What a family exports and how it is checked, independent of the target format."""

    name: ClassVar[str]

    def check_options(self, spec: "ModelSpec", options: "ConvertOptions") -> None:  # noqa: B027 (optional hook)
        """Refuse, before any work, options this layout has no use for."""

    @abstractmethod
    def signature(self, spec: "ModelSpec", options: "ConvertOptions"):
        """The exported decoder's inputs and shapes for these options."""

    @abstractmethod
    def reference(self, model: "nn.Module", signature) -> "Reference":
        """The official model's outputs on the validation inputs (`.tensor` and `.embeddings` at least)."""

    @abstractmethod
    def prompt_manifest(self, options: "ConvertOptions", signature) -> Dict:
        """The manifest's `decoder_prompt` section."""

    @abstractmethod
    def validate(self, model: "nn.Module", infos: list, method: str) -> Dict[str, Dict]:
        """`samexport validate`: package path -> report for this layout's packages (`validate.PackageInfo`)
        of one model, checked with `method` (coreml or numpy)."""

    def input_contract(self, spec: "ModelSpec", signature) -> Dict:
        """What an app must feed the exports (the manifest's `input_contract`)."""
        return spec.family.input_contract()


_TARGETS: Dict[Tuple[str, str], ExportTarget] = {}
_LAYOUTS: Dict[str, ExportLayout] = {}


def register_target(cls: type) -> type:
    key = (cls.layout, cls.name)
    if key in _TARGETS:
        raise ValueError(f"export target {cls.name!r} is registered twice for the {cls.layout} layout")
    _TARGETS[key] = cls()
    return cls


def register_layout(cls: type) -> type:
    if cls.name in _LAYOUTS:
        raise ValueError(f"export layout {cls.name!r} is registered twice")
    _LAYOUTS[cls.name] = cls()
    return cls


def _load() -> None:
    for module in TARGET_MODULES:
        importlib.import_module(module)


def targets(layout: str = "sam") -> Dict[str, ExportTarget]:
    """name -> target of one layout, in registration order (importing a target module registers it)."""
    _load()
    return {name: target for (owner, name), target in _TARGETS.items() if owner == layout}


def export_layout(name: str) -> ExportLayout:
    _load()
    return _LAYOUTS[name]
