"""Why Core AI assets are float32: the MobileSAM decoder exported at float32 and at float16 (weights and
compute, as Apple's EfficientSAM recipe does with `model.to(float16)`), each run by Apple's runtime here
(coreai-core's Linux build, its reference CPU path) on the one-click validation case, against PyTorch.

    .venv/bin/python benchmarks/coreai_precision.py   # -> results/linux-x86_64-2core/coreai_precision.json
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

from torch import nn

from samexport import build_model
from samexport.export import coreai_export
from samexport.export.compare import compare
from samexport.export.coreai_runner import CoreAIRunner
from samexport.export.coreai_target import entry_points
from samexport.export.options import ConvertOptions
from samexport.export.target import targets
from samexport.fsutil import atomic_write_text
from samexport.provenance import machine, versions

OUT = Path(__file__).parent / "results" / "linux-x86_64-2core" / "coreai_precision.json"


class Float16(nn.Module):
    """The module in float16 (weights and arithmetic) behind float32 inputs and outputs."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = copy.deepcopy(module).half()

    def forward(self, *inputs):
        return tuple(t.float() for t in self.module(*(x.half() for x in inputs)))


def main() -> None:
    model = build_model("tinyvit")
    family = model.spec.family
    options = ConvertOptions(encoder="tinyvit", target="coreai", points=(1,))
    shapes = family.export_shapes(options)
    part = family.export_parts(
        model, model, shapes, targets()["coreai"].form(options), family.reference(model, shapes)
    )["decoder"]
    interface = part.interface
    functions = entry_points(interface)[:1]
    name, feeds, expected = part.cases(None)[0]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision, module in (("fp32", part.module()), ("fp16", Float16(part.module()))):
            path = Path(tmp) / f"decoder_{precision}.aimodel"
            program = coreai_export.convert_part(
                module, interface.input_names, interface.output_names, functions
            )
            coreai_export.save(program, path, "MobileSAM decoder", {})
            runner = CoreAIRunner(path, {"main": {k: list(v) for k, v in functions[0][1].items()}})
            outputs, extras = runner.run(feeds)
            runner.close()
            rows[precision] = {
                "case": name,
                "runtime_seconds": round(extras["runtime_seconds"], 2),
                **{o: {k: compare(outputs[o], expected[o])[k] for k in ("rel", "psnr_db")} for o in expected},
            }
            print(precision, rows[precision], flush=True)
    atomic_write_text(
        OUT, json.dumps({"machine": machine(), "versions": versions(), "rows": rows}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
