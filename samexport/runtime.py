"""What runs a part, whatever made it: the runner interface (feeds in, outputs out), PyTorch's runner, and a
session (one runner per part of a family, all from one backend) that pipelines run over.

Every export target gives a runner for its files (`export.runners`); PyTorch's runner runs the part's module
itself. A pipeline (a family's application loop: encode once and decode prompt sets, a video's tubes, frames
carried from one step to the next) only ever calls `Session.run`, so it runs on any backend a manifest has.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from .errors import InputError, UsageError

if TYPE_CHECKING:
    from .parts import ExportShapes, Interface, PartForm


class Runner(ABC):
    description: str
    runtime: str  # the floor's runtime (quality.floor_for): onnxruntime, coreml, numpy, torch

    @abstractmethod
    def run(self, feeds: Dict[str, np.ndarray]) -> Tuple[Dict[str, np.ndarray], Dict]:
        """Outputs by name, and what else the runtime saw."""

    def origin(self, extras: Dict) -> str:
        """Where a failure started (the evaluator knows), for the failure line."""
        return ""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release what the runner holds (a child process, temporary files)."""


class TorchRunner(Runner):
    """A part's PyTorch module, float32 on the CPU."""

    runtime = "numpy"  # float32 CPU arithmetic: the exact floor

    def __init__(self, module, output_names: Sequence[str], input_names: Optional[Sequence[str]] = None):
        self.module, self.output_names = module, list(output_names)
        self.input_names = list(input_names) if input_names is not None else None
        self.description = "PyTorch (float32 CPU)"

    def run(self, feeds):
        import torch

        ordered = [feeds[n] for n in self.input_names] if self.input_names else list(feeds.values())
        with torch.no_grad():
            values = self.module(*(torch.from_numpy(np.asarray(v)) for v in ordered))
        values = values if isinstance(values, tuple) else (values,)
        return dict(zip(self.output_names, (v.numpy() for v in values))), {}


class Session:
    """The parts of one model on one backend: a runner per part, each part's interface, and the input size the
    parts were made for (None: PyTorch's modules take any size the family's official pipeline gives)."""

    def __init__(
        self,
        backend: str,
        model: str,
        interfaces: Mapping[str, "Interface"],
        runners: Mapping[str, Runner],
        input_size: Optional[Tuple[int, int]] = None,
        source: str = "",
        shapes: Optional["ExportShapes"] = None,
        form: Optional["PartForm"] = None,
        unavailable: Optional[Mapping[str, str]] = None,
    ) -> None:
        self.backend, self.model = backend, model
        self.interfaces, self.runners = dict(interfaces), dict(runners)
        self.input_size = tuple(input_size) if input_size is not None else None
        self.source = source  # the manifest (or checkpoint) the parts come from, for messages and records
        self.shapes, self.form = shapes, form  # what the parts were exported with (None: PyTorch's modules)
        self.unavailable = dict(unavailable or {})  # part -> why this model cannot run it

    @property
    def parts(self) -> Tuple[str, ...]:
        return tuple(self.runners)

    def require(self, *parts: str) -> None:
        """Refuse, before any work, a pipeline that needs parts this session lacks."""
        missing = [p for p in parts if p not in self.runners]
        for part in missing:
            if part in self.unavailable:
                raise InputError(self.unavailable[part])
        if missing:
            raise UsageError(
                f"the {self.backend} session of {self.model} ({self.source or 'no manifest'}) has no "
                f"{', '.join(missing)} part (it has {', '.join(self.parts) or 'none'}); convert it with the "
                "options that export them"
            )

    def run(self, part: str, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """One call of `part`: feeds by input name -> outputs by output name (float32 numpy arrays)."""
        self.require(part)
        outputs, _ = self.runners[part].run({k: np.asarray(v, dtype=np.float32) for k, v in feeds.items()})
        return {k: np.asarray(v, dtype=np.float32) for k, v in outputs.items()}

    def describe(self) -> Dict:
        """What ran, for a result's record."""
        return {
            "backend": self.backend,
            "source": self.source,
            "runners": {p: r.description for p, r in self.runners.items()},
        }

    def close(self) -> None:
        for runner in self.runners.values():
            runner.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
