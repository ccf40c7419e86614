"""ONNX's runner: onnxruntime's CPU provider (the heads' hard masks read back where a graph has them)."""

from __future__ import annotations

from pathlib import Path

from ..runtime import Runner


class OnnxRunner(Runner):
    runtime = "onnxruntime"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        from . import onnx_export

        self.session, self.names, self.masks = onnx_export.session_with_hard_masks(path, threads)
        self.description = "onnxruntime (CPU)"

    def run(self, feeds):
        wanted = {i.name for i in self.session.get_inputs()}
        values = self.session.run(None, {k: v for k, v in feeds.items() if k in wanted})
        extras = {"hard_masks": values[len(self.names) :]} if self.masks else {}
        return dict(zip(self.names, values[: len(self.names)])), extras
