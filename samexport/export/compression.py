"""The `--compress` modes: one `Compression` per mode, registered once, each owning its file suffix,
storage width, lowest deployment target, and whether ONNX offers it. Applying a mode to a Core ML
model is `coreml_compress`; this module stays light so option parsing does not load coremltools."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

from ..errors import UsageError

MIN_TARGETS = ("iOS16", "iOS17", "iOS18")
# Output channels per palette in the grouped modes. Both divide every conv/linear output width of the
# zoo (40, 48, 64, 80, ...; 16 would leave RepViT's 40-wide layers uncompressed). RepViT-SAM's encoder,
# fixture weights, 4 bits, measured once with coremltools' palettizer and the evaluator: 16 channels
# per palette 18.6 dB / 12.3 MB, 4 channels 22.3 dB / 12.7 MB; 6 bits, 16 channels: 31.7 dB.
GROUP_SIZE_4BIT = 4
GROUP_SIZE_6BIT = 8
FIRST_LAST = "first-last"


@dataclass(frozen=True)
class Compression:
    """A `--compress` mode.

    weights: "int8" (linear, per channel), "palettize" (k-means palettes of `nbits`; one per tensor,
    or one per `group_size` output channels) or None. activations: int8 activations, calibrated.
    """

    name: str
    suffix: str
    summary: str
    weights: str | None = None
    nbits: int = 0
    group_size: int = 0
    activations: bool = False
    min_target: str = "iOS16"
    onnx: bool = False

    @property
    def lossy(self) -> bool:
        return self.weights is not None or self.activations

    @property
    def new_style(self) -> bool:
        """The modes held to the mask-agreement floor as well (the grouped and int8-activation ones)."""
        return self.group_size > 0 or self.activations

    @property
    def bytes_per_weight(self) -> float:
        return {None: 2.0, "int8": 1.0}.get(self.weights, self.nbits / 8)

    def describe(self) -> Dict:
        return {
            "mode": self.name,
            "weights": self.weights or "fp16",
            "nbits": self.nbits or (8 if self.weights == "int8" else 16),
            "group_size": self.group_size or None,
            "activations": "int8 (calibrated)" if self.activations else "fp16",
            "min_target": self.min_target,
        }


COMPRESSIONS: Dict[str, Compression] = {}


def register(mode: Compression) -> None:
    if mode.name in COMPRESSIONS:
        raise ValueError(f"--compress mode {mode.name!r} is registered twice")
    if mode.min_target not in MIN_TARGETS:
        raise ValueError(f"--compress mode {mode.name!r} names an unknown target {mode.min_target}")
    COMPRESSIONS[mode.name] = mode


for _mode in (
    Compression("none", "", "fp16/fp32 weights as converted", onnx=True),
    Compression("int8", "Int8", "8-bit linear weights, per output channel", weights="int8", onnx=True),
    Compression("palettize8", "Palettized8", "8-bit k-means palette per tensor", "palettize", 8),
    Compression("palettize6", "Palettized6", "6-bit k-means palette per tensor", "palettize", 6),
    Compression("palettize4", "Palettized4", "4-bit k-means palette per tensor", "palettize", 4),
    Compression(
        "palettize6g",
        "Palettized6G",
        f"6-bit k-means palettes, one per {GROUP_SIZE_6BIT} output channels (iOS18)",
        "palettize",
        6,
        GROUP_SIZE_6BIT,
        min_target="iOS18",
    ),
    Compression(
        "palettize4g",
        "Palettized4G",
        f"4-bit k-means palettes, one per {GROUP_SIZE_4BIT} output channels (iOS18)",
        "palettize",
        4,
        GROUP_SIZE_4BIT,
        min_target="iOS18",
    ),
    Compression(
        "w8a8",
        "W8A8",
        "8-bit linear weights and int8 activations calibrated on generated images (iOS17)",
        "int8",
        activations=True,
        min_target="iOS17",
    ),
    Compression(
        "a8w4",
        "A8W4",
        f"4-bit grouped palettes ({GROUP_SIZE_4BIT} channels each) with int8 activations (iOS18)",
        "palettize",
        4,
        GROUP_SIZE_4BIT,
        activations=True,
        min_target="iOS18",
    ),
):
    register(_mode)


def compression(name: str) -> Compression:
    try:
        return COMPRESSIONS[name]
    except KeyError:
        raise UsageError(f"unknown --compress {name!r}; choose one of: {', '.join(COMPRESSIONS)}") from None


def raised_target(mode: Compression, min_target: str) -> str:
    """`min_target`, or the mode's own lowest target where that is higher."""
    return max(min_target, mode.min_target, key=MIN_TARGETS.index)


def parse_keep_layers(text: str | None) -> Tuple[str, ...]:
    """`first-last`, or comma-separated layer names (PyTorch module paths or MIL op names)."""
    if not text:
        return ()
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if FIRST_LAST in names and len(names) > 1:
        raise UsageError(f"--keep-layers takes {FIRST_LAST} or layer names, not both")
    return names


def check_clip(value: float | None, mode: Compression) -> float | None:
    """--weight-clip K: clip each 4-bit-palettized weight tensor at K standard deviations per output
    channel before its palettes are fitted."""
    if value is None:
        return None
    if not (mode.weights == "palettize" and mode.nbits == 4):
        raise UsageError("--weight-clip applies to the 4-bit modes (palettize4, palettize4g, a8w4)")
    if not 1.0 <= value <= 10.0:
        raise UsageError(f"--weight-clip is a number of standard deviations from 1 to 10, got {value}")
    return float(value)
