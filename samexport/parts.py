"""What a family exports, described once for every target, check, runtime and bench device.

A *part* is one exported model (an image encoder, a prompt decoder, a panoptic head, ...). Its
`Interface` is data: input and output tensors (names, shapes with symbolic dims, image-typed
inputs, what bench fills them with, which quality floor an output is held to), the static shape of
every function, the dynamic axes of a graph that takes any size, which inputs come from another
part at the same step (`upstream`) and which from earlier steps (`carried`: the state between frames).
A `Part` adds what needs the model: the traceable module, example inputs, the validation cases
(feeds and the official model's outputs for them) and, for parts that pool under hard masks, the
recomputation under the export's own masks. A target lowers any part from this description alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

if TYPE_CHECKING:  # numpy stays unloaded for option parsing and --help
    import numpy as np

Dim = Union[int, str]  # a symbolic dim ("B", "N") takes the size of the call
Case = Tuple[str, Dict[str, "np.ndarray"], Dict[str, "np.ndarray"]]  # name, feeds, output -> official value
# recompute(case name, the export's hard masks) -> (expected outputs under those masks, PyTorch's logits at
# each of them)
Recompute = Callable[[str, List["np.ndarray"]], Tuple[Dict[str, "np.ndarray"], List["np.ndarray"]]]
FILLS = ("normal", "zeros", "ones", "coords", "boxes", "size", "points", "pixels")


@dataclass(frozen=True)
class Tensor:
    """One input or output of a part."""

    name: str
    shape: Tuple[Dim, ...]
    description: str
    image: bool = False  # an 8-bit RGB image input (normalization inside the model)
    pixel_bias: Optional[Tuple[float, float, float]] = None  # image inputs: added to the 0..255 pixels
    fill: str = "normal"  # how bench and example feeds fill an input (FILLS)
    floor: str = "default"  # outputs: the kind of quality floor it is held to (`export.quality.floor_for`)
    threshold: Optional[float] = None  # outputs: where an app thresholds it (mask logits)

    def __post_init__(self) -> None:
        if self.fill not in FILLS:
            raise ValueError(f"tensor {self.name}: unknown fill {self.fill!r}; one of {', '.join(FILLS)}")

    def sized(self, sizes: Mapping[str, int]) -> Tuple[int, ...]:
        """The shape with its symbolic dims given sizes (a dim not given stays 1)."""
        return tuple(d if isinstance(d, int) else int(sizes.get(d, 1)) for d in self.shape)

    def describe(self) -> Dict:
        return {"name": self.name, "shape": list(self.shape), "fill": self.fill, "image": self.image}


@dataclass(frozen=True)
class PartForm:
    """How a target wants the parts: traits a target declares, never a target's name."""

    packed_prompts: bool  # a prompt set as one packed input ((B, N, 3) points) instead of coords + labels
    image_input: bool  # the encoder takes 8-bit RGB pixels (Core ML ImageType) instead of a normalized tensor
    dynamic: bool  # the runtime takes any prompt-set and token count where the family allows it


@dataclass(frozen=True)
class ExportShapes:
    """The sizes an export fixes: prompt tokens (or queries) per prompt set, prompt sets per call, input
    (h, w). Written into every exported file's metadata so that it can be checked again later."""

    token_counts: Tuple[int, ...]
    batch_sizes: Tuple[int, ...] = (1,)
    input_size: Tuple[int, int] = (1024, 1024)

    def metadata(self) -> Dict[str, str]:
        return {
            "com.samexport.token_counts": json.dumps(list(self.token_counts)),
            "com.samexport.batch_sizes": json.dumps(list(self.batch_sizes)),
            "com.samexport.input_size": json.dumps(list(self.input_size)),
        }

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str], default_size: Tuple[int, int]) -> "ExportShapes":
        """From `metadata()` (files of samexport 0.x before it wrote `token_counts` for every family named
        RAP-SAM's `prompt_counts`)."""
        tokens = meta.get("com.samexport.token_counts") or meta.get("com.samexport.prompt_counts") or "[1]"
        return cls(
            tuple(json.loads(tokens)),
            tuple(json.loads(meta.get("com.samexport.batch_sizes", "[1]"))),
            tuple(json.loads(meta.get("com.samexport.input_size", json.dumps(list(default_size))))),
        )


EMPTY_SLOTS = ("zeros",)


@dataclass(frozen=True)
class Carried:
    """An input fed from earlier steps (frames) instead of the caller: `part`'s output `output` at the
    `slots` previous steps, newest first, stacked on the first axis; a slot before the first step holds
    `empty` (zeros). An app reads the loop from the manifest's record of it."""

    part: str
    output: str
    slots: int = 1
    empty: str = "zeros"

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ValueError(f"carried {self.part}.{self.output}: slots must be at least 1, got {self.slots}")
        if self.empty not in EMPTY_SLOTS:
            raise ValueError(
                f"carried {self.part}.{self.output}: empty must be one of {', '.join(EMPTY_SLOTS)}"
            )

    def describe(self) -> Dict:
        return {"part": self.part, "output": self.output, "slots": self.slots, "empty": self.empty}


@dataclass(frozen=True)
class Function:
    """One static shape of a part: its name (multifunction packages) and each input's shape."""

    name: str
    shapes: Dict[str, Tuple[int, ...]]


@dataclass(frozen=True)
class BenchFacts:
    """How bench measures a part: `sweep` the row field whose sizes it runs (the family's `bench_sizes`:
    "points", a prompt's clicks, or "frames") and the symbolic dim each size sets (`dim`, through the
    family's `bench_dims`); `runs` timed runs by default (a millisecond-scale part needs more samples for
    a stable median); `column` its paper-table column ({title}: the model's, {decoder}: its family's
    decoder title; None: not in the table) and the sweep size it is shown at."""

    runs: int = 5
    sweep: Optional[str] = None
    dim: Optional[str] = None
    column: Optional[str] = None
    column_size: Optional[int] = None


@dataclass(frozen=True)
class Interface:
    """A part's inputs, outputs and shapes: everything about it that needs no model."""

    part: str
    title: str  # "image encoder", "prompt encoder + mask decoder", ...
    inputs: Tuple[Tensor, ...]
    outputs: Tuple[Tensor, ...]
    functions: Tuple[Function, ...]  # every static shape, the default (what apps call most) first
    dynamic_axes: Dict[str, Dict[int, str]] = field(default_factory=dict)  # for runtimes taking any size
    upstream: Dict[str, str] = field(default_factory=dict)  # input name -> the part whose output it is
    carried: Dict[str, Carried] = field(default_factory=dict)  # input name -> the state earlier steps feed
    notes: Dict[str, str] = field(default_factory=dict)  # facts for the manifest
    # float16 exports keep the ops that pool under hard masks in float32 (`export.coreml_precision`)
    keeps_float32_pooling: bool = False
    # float16 exports keep matrix products that sum this many terms or more in float32 (an attention's
    # weighted sum over thousands of keys), on Core ML op by op and in the simulated float16 device; LiteRT,
    # which has no per-op precision, runs such parts in float32 (`export.coreml_precision`)
    float32_sums_over: Optional[int] = None
    reparameterized: bool = False  # its module was reparameterized: no batch normalization is left
    bench: BenchFacts = BenchFacts()

    @property
    def input_names(self) -> List[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> List[str]:
        return [t.name for t in self.outputs]

    @property
    def default(self) -> Function:
        return self.functions[0]

    def varying(self) -> List[str]:
        """Inputs whose shape differs between functions (Core ML: enumerated shapes on them)."""
        return [n for n in self.input_names if len({f.shapes[n] for f in self.functions}) > 1]

    def function_at(self, sizes: Mapping[str, int]) -> Optional[Function]:
        """The function whose inputs have the symbolic dims at `sizes` ({"B": 1, "N": 2})."""
        return next(
            (f for f in self.functions if all(f.shapes[t.name] == t.sized(sizes) for t in self.inputs)),
            None,
        )

    def describe(self) -> Dict:
        """The manifest's record of this part: what an app or bench feeds it."""
        return {
            "title": self.title,
            "inputs": [t.describe() for t in self.inputs],
            "outputs": [t.describe() for t in self.outputs],
            "functions": {f.name: {k: list(v) for k, v in f.shapes.items()} for f in self.functions},
            **({"dynamic_axes": self.dynamic_axes} if self.dynamic_axes else {}),
            **({"upstream": self.upstream} if self.upstream else {}),
            **({"carried": {k: c.describe() for k, c in self.carried.items()}} if self.carried else {}),
        }


@dataclass
class Part:
    """An interface plus what needs the model: module, example inputs, validation cases."""

    interface: Interface
    module: Callable[[], object]  # () -> the traceable nn.Module (reparameterized weights)
    example: Callable[[], tuple]  # () -> example inputs of the default function, in input order
    # (upstream values) -> validation cases; upstream maps an input fed by another part to PyTorch's value of
    # it on that part's first case (end-to-end checks: the other part's export output replaces it)
    cases: Callable[[Optional[Dict[str, np.ndarray]]], List[Case]]
    recompute: Optional[Recompute] = None
    calibration: Optional[Callable[[], List[Dict[str, np.ndarray]]]] = None  # activation calibration feeds

    @property
    def name(self) -> str:
        return self.interface.part


def synthetic_feeds(
    inputs: Sequence[Mapping], sizes: Mapping[str, int], seed: int = 0
) -> Dict[str, np.ndarray]:
    """Deterministic inputs of the right shapes for timing (latency does not depend on their values), from
    `Tensor.describe()` records (the manifest's `parts`): the symbolic dims take `sizes` ("B" prompt sets,
    "N" tokens), an image input 0..255 pixels."""
    import numpy as np

    rng = np.random.default_rng(seed)
    feeds = {}
    for t in (Tensor(r["name"], tuple(r["shape"]), "", fill=r["fill"]) for r in inputs):
        shape = t.sized(sizes)
        if t.fill == "pixels":
            value = rng.integers(0, 256, shape)
        elif t.fill in ("coords", "boxes"):
            value = np.sort(rng.uniform(0, 512, shape), axis=-1)
        elif t.fill == "points":  # (B, N, 3): x, y in the model frame and a positive label
            value = np.concatenate([rng.uniform(0, 512, (*shape[:-1], 2)), np.ones((*shape[:-1], 1))], -1)
        elif t.fill == "size":
            value = np.full(shape, 512.0)
        elif t.fill == "ones":
            value = np.ones(shape)
        elif t.fill == "zeros":
            value = np.zeros(shape)
        else:
            value = rng.standard_normal(shape)
        feeds[t.name] = value.astype(np.float32)
    return feeds
