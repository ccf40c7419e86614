"""LiteRT's runner: Google's LiteRT runtime on its XNNPACK CPU path, the one Android phones use."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

from ..runtime import Runner
from .runners import function_for


class LiteRTRunner(Runner):
    """Google's LiteRT runtime (`ai_edge_litert`'s CompiledModel on its XNNPACK CPU accelerator), one
    static signature per call, in float32 inference: the same arithmetic on every CPU (XNNPACK's float16
    inference is float16 arithmetic on some CPUs and float32 on others; what a float16 device gets is
    `Float16DeviceRunner`'s to say)."""

    runtime = "litert"

    def __init__(self, path: Path, functions: Dict[str, Dict[str, list]], threads: int | None = None) -> None:
        import os

        from .litert_export import CompiledPart

        self.path, self.functions = Path(path), functions
        self.threads = threads or os.cpu_count() or 1
        self.compiled = CompiledPart(self.path, self.threads)
        self.description = f"LiteRT, XNNPACK CPU, float32 inference, {self.threads} threads"

    def run(self, feeds):
        import time

        function = function_for(self.path, self.functions, feeds)
        self.compiled.prepare(function)
        start = time.perf_counter()
        outputs = self.compiled.run(function, feeds)
        return outputs, {"runtime_seconds": time.perf_counter() - start}

    def close(self) -> None:
        if self.compiled.model is not None:
            self.compiled.close()
