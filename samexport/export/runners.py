"""Runners every target shares (`samexport.runtime.Runner`: feeds in, outputs out); each target declares its
own runner beside its lowering (`<target>_target.py`: onnxruntime, Core ML and the NumPy evaluator, Core AI,
LiteRT), PyTorch's is `samexport.runtime.TorchRunner`.

- `Float16DeviceRunner`: a part's module in simulated float16 device arithmetic (`float16_device`).
- `function_for`: the static function of a file whose inputs are the feeds' shapes.

`run(feeds) -> (outputs, extras)`: `extras` may carry `hard_masks`, the evaluator's `evaluation`
summary and its `fp32_outputs`; `origin(extras)` says where a failure started.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import numpy as np

from ..errors import UsageError
from ..runtime import Runner


class Float16DeviceRunner(Runner):
    """A part's module in float16 device arithmetic, simulated the same way on every CPU: what a phone that
    computes in float16 gets from a float16 export of it."""

    runtime = "float16_device"
    description = "float16 device arithmetic (simulated: float16 values, products accumulated in float16)"

    def __init__(self, module, output_names, input_names, sums_over: Optional[int] = None) -> None:
        self.module, self.output_names, self.input_names = module, list(output_names), list(input_names)
        self.sums_over = sums_over  # the part's float32 regions (`Interface.float32_sums_over`)

    def run(self, feeds):
        from .float16_device import simulate

        outputs = simulate(self.module, feeds, self.input_names, self.sums_over)
        return dict(zip(self.output_names, outputs)), {}


def function_for(path: Path, functions: Dict[str, Dict[str, list]], feeds: Dict[str, np.ndarray]) -> str:
    """The static function (signature) of a file whose input shapes are the feeds' shapes."""
    shapes = {k: list(np.shape(v)) for k, v in feeds.items()}
    for name, wanted in functions.items():
        if all(shapes.get(k) == list(v) for k, v in wanted.items()):
            return name
    raise UsageError(f"{Path(path).name} has no function taking {shapes}; it has {', '.join(functions)}")
