"""A toy stateful family for tests: features carried from frame to frame, the shape of the memory-bank
trackers (EdgeTAM, SAM 2.1) at a few thousand parameters.

Two parts: `encoder` (frame (1, 3, 32, 32) -> features (1, 8, 8, 8)) and `step` (this frame's features and
the state of the two previous steps, newest first, zeros before the clip starts -> state (1, 8, 8, 8) and a
mask logit map (1, 1, 8, 8)). The step's `memory` input is declared `carried` from its own `state` output, so
the loop is data every target, the manifest and `check_sequence` read.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Dict, List

import numpy as np
import torch
from torch import nn

from samexport.errors import UsageError
from samexport.families import Family, register_family, unregister_family
from samexport.families.base import fp16_megabytes
from samexport.families.registry import ModelSpec, register_model, unregister_model
from samexport.parts import Carried, ExportShapes, Function, Interface, Part, Tensor

SIZE, CHANNELS, GRID, SLOTS, STEPS = 32, 8, 8, 2, 4


class ToyTracker(nn.Module):
    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.mix = nn.Conv2d(CHANNELS * (1 + SLOTS), CHANNELS, 3, padding=1)
        self.head = nn.Conv2d(CHANNELS, 1, 1)

    def step(self, features: torch.Tensor, memory: torch.Tensor):
        """features (1, C, g, g), memory (SLOTS, C, g, g) newest first -> state (1, C, g, g), mask logits
        (1, 1, g, g)."""
        stacked = torch.cat([features, memory.reshape(1, SLOTS * CHANNELS, GRID, GRID)], 1)
        state = torch.tanh(self.mix(stacked)) + 0.5 * memory[:1]
        return state, self.head(state)


class StepModule(nn.Module):
    def __init__(self, model: ToyTracker) -> None:
        super().__init__()
        self.model = model

    def forward(self, features, memory):
        return self.model.step(features, memory)


def clip(steps: int = STEPS) -> List[Dict[str, np.ndarray]]:
    """Seeded frames, each the last one moved and noised a little (what the step's state follows)."""
    rng = np.random.default_rng(7)
    frame = rng.standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
    frames = []
    for _ in range(steps):
        frames.append({"frame": frame})
        frame = np.roll(frame, 2, axis=-1) + 0.1 * rng.standard_normal(frame.shape).astype(np.float32)
    return frames


class ToySequenceFamily(Family):
    name = "toyseq"
    model_class = ToyTracker
    default_input_size = (SIZE, SIZE)
    bench_parts = ("encoder", "step")

    def exported_parts(self, options):
        return ("encoder", "step")

    def check_convert_options(self, spec, options) -> None:
        if options.compress != "none":
            raise UsageError(f"--compress is not offered for {spec.name}; drop it")

    def export_shapes(self, options) -> ExportShapes:
        return ExportShapes((1,), (1,), (SIZE, SIZE))

    def export_contract(self, shapes):
        return {
            "family": self.name,
            "frame": f"float32 (1, 3, {SIZE}, {SIZE})",
            "state": "carried by the step",
        }

    def prompt_manifest(self, shapes):
        return {}

    def reference(self, model, shapes):
        from samexport.sequence import SequencePipeline
        from samexport.zoo import model_session

        pipeline = SequencePipeline(model_session(model))
        pipeline.run(clip())
        return pipeline

    def part_interfaces(self, shapes, form) -> Dict[str, Interface]:
        features = Tensor("features", (1, CHANNELS, GRID, GRID), "float32 frame features")
        state = Tensor(
            "hidden", (1, CHANNELS, GRID, GRID), "float32 the step's state, carried to later steps"
        )
        encoder = Interface(
            "encoder",
            "frame encoder",
            (Tensor("frame", (1, 3, SIZE, SIZE), "float32 frame"),),
            (features,),
            (Function("main", {"frame": (1, 3, SIZE, SIZE)}),),
        )
        memory = Tensor(
            "memory", (SLOTS, CHANNELS, GRID, GRID), "float32 the two previous states, newest first"
        )
        step = Interface(
            "step",
            "tracking step",
            (features, memory),
            (state, Tensor("maskLogits", (1, 1, GRID, GRID), "float32 mask logits", threshold=0.0)),
            (Function("main", {"features": features.shape, "memory": memory.shape}),),
            upstream={"features": "encoder"},
            carried={"memory": Carried("step", "hidden", SLOTS)},
        )
        return {"encoder": encoder, "step": step}

    def part_modules(self, model, form):
        return {"encoder": lambda: model.encoder.eval(), "step": lambda: StepModule(model).eval()}

    def export_parts(self, model, fused, shapes, form, reference) -> Dict[str, Part]:
        interfaces = self.part_interfaces(shapes, form)
        modules = self.part_modules(fused, form)

        def cases_of(part):
            def cases(upstream=None):
                return [
                    (f"step {i}", fed, reference.history[part][i])
                    for i, fed in enumerate(reference.fed[part])
                ]

            return cases

        return {
            part: Part(
                interfaces[part],
                module=modules[part],
                example=lambda part=part: tuple(torch.from_numpy(v) for v in reference.fed[part][0].values()),
                cases=cases_of(part),
            )
            for part in interfaces
        }

    def param_counts(self, model):
        encoder = sum(p.numel() for p in model.encoder.parameters())
        total = sum(p.numel() for p in model.parameters())
        return {"encoder": encoder, "decoder": total - encoder, "total": total}

    def model_facts(self, model, gmacs):
        return {"fp16_mb": fp16_megabytes({"encoder": model.encoder, "step": StepModule(model)})}


@contextmanager
def toy_sequence_registered():
    """The toy stateful family and its model `toyseq`, registered for the duration."""
    family = register_family(ToySequenceFamily())
    spec = register_model(
        ModelSpec(
            name="toyseq",
            title="Toy stateful tracker",
            artifact_stem="ToySeq",
            family=family,
            encoder=lambda: nn.Conv2d(3, CHANNELS, SIZE // GRID, stride=SIZE // GRID),
            checkpoint_file="toyseq.pt",
            checkpoint_source="tests",
            summary="one conv encoder, a step carrying its state over two slots",
        )
    )
    try:
        yield spec
    finally:
        unregister_model("toyseq")
        unregister_family("toyseq")
