"""`samexport convert`'s options, checked before any work, and the file names they lead to."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Tuple

from ..errors import UsageError
from .compression import MIN_TARGETS, check_clip, compression, parse_keep_layers
from .target import manifest_name, targets

if TYPE_CHECKING:
    from ..families.registry import ModelSpec

DEFAULT_POINTS = (1, 2, 3, 4, 5, 8, 16)
# Prompts of more points exist nowhere in the official tools' use; every count is a decoder shape.
MAX_POINTS = 64
# Core ML decoders take B prompt sets per call for each B given (ONNX: any B). The everything mode
# decodes 64 grid points per call (the official points_per_batch).
DEFAULT_BATCH = (1,)
EVERYTHING_BATCH = (1, 4, 16, 64)
MAX_BATCH = 256
PRECISIONS = ("fp16", "fp32")
IMAGE_INPUTS = ("image", "tensor")
# enumerated: one decoder function taking every (B, N) shape; multifunction: one static function per
# shape, weights shared (iOS18).
DECODER_SHAPES = ("enumerated", "multifunction")


def spoken(items, conjunction: str) -> str:
    """["ONNX", "Core ML", "LiteRT"] -> "ONNX, Core ML and LiteRT"."""
    items = list(items)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


@dataclass
class ConvertOptions:
    """What to export and how; `target` is one target, several comma-separated, or "all" (every registered
    target)."""

    encoder: str
    target: str = "coreml"
    checkpoint: Path | None = None
    output_dir: Path = Path("models")
    precision: str | None = None  # None: fp16 where a target offers it (`ExportTarget.precisions`)
    compress: str = "none"
    points: Tuple[int, ...] = DEFAULT_POINTS
    batch: Tuple[int, ...] = DEFAULT_BATCH
    image_input: str = "image"
    min_target: str | None = None  # None: iOS16 (Core ML's lowest)
    keep_layers: str | None = None
    weight_clip: float | None = None
    decoder_shapes: str = "enumerated"
    input_size: Tuple[int, int] | None = None  # (h, w) of a fixed-size encoder input (RAP-SAM)
    classifier: Path | None = None  # RAP-SAM's class embeddings (see models/README.md)
    force: bool = False
    validate: bool = True
    targets: Tuple[str, ...] = field(init=False)
    # what the options changed on their own (a raised deployment target), said before any work
    notes: Tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        known = targets()
        self.target = str(self.target).lower()
        chosen_names = [n.strip() for n in self.target.split(",")]
        for name in chosen_names:
            if name != "all" and name not in known:
                raise UsageError(
                    f"unknown --target {name!r}; choose one or more (comma-separated) of: "
                    f"{', '.join([*known, 'all'])}"
                )
        self.targets = tuple(known) if "all" in chosen_names else tuple(dict.fromkeys(chosen_names))
        given = {
            "--precision": self.precision is not None,
            "--min-target": self.min_target is not None,
            "--keep-layers": bool(self.keep_layers),
        }
        self.precision = str(self.precision or PRECISIONS[0]).lower()
        if self.precision not in PRECISIONS:
            raise UsageError(f"unknown --precision {self.precision!r}; choose fp16 or fp32")
        self.compress = str(self.compress).lower()
        self.decoder_shapes = str(self.decoder_shapes).lower()
        self.image_input = str(self.image_input).lower()
        mode = compression(self.compress)
        chosen = [known[name] for name in self.targets]
        refuse_ignored_options(chosen, given, self.precision, "all" in chosen_names)
        if any(self.compress not in t.compressions for t in chosen):
            offered_by = [t for t in known.values() if self.compress in t.compressions]
            raise UsageError(
                f"--compress {self.compress} is {spoken([t.title for t in offered_by], 'and')} only; use "
                f"--target {' or '.join(t.name for t in offered_by)}"
                + "".join(
                    f", or --compress {' or '.join(c for c in t.compressions if c != 'none')} for {t.title}"
                    for t in chosen
                    if self.compress not in t.compressions and len(t.compressions) > 1
                )
            )
        self.min_target = {t.lower(): t for t in MIN_TARGETS}.get(
            str(self.min_target or MIN_TARGETS[0]).lower(), self.min_target
        )
        if self.min_target not in MIN_TARGETS:
            raise UsageError(
                f"unknown --min-target {self.min_target!r}; choose one of: {', '.join(MIN_TARGETS)}"
            )
        if self.decoder_shapes not in DECODER_SHAPES:
            raise UsageError(
                f"unknown --decoder-shapes {self.decoder_shapes!r}; choose enumerated or multifunction"
            )
        if any(self.decoder_shapes not in t.decoder_shapes for t in chosen):
            offered_by = [t for t in known.values() if self.decoder_shapes in t.decoder_shapes]
            raise UsageError(
                f"--decoder-shapes {self.decoder_shapes} is "
                f"{' and '.join(t.title for t in offered_by)} only; "
                f"use --target {' or '.join(t.name for t in offered_by)}"
            )
        for target in chosen:
            self.notes += target.settle_options(self)
        self.keep_layers = ",".join(parse_keep_layers(self.keep_layers)) or None
        if self.keep_layers and not mode.lossy:
            raise UsageError("--keep-layers chooses layers to leave uncompressed; it needs a --compress mode")
        self.weight_clip = check_clip(self.weight_clip, mode)
        if self.image_input not in IMAGE_INPUTS:
            raise UsageError(f"unknown --image-input {self.image_input!r}; choose image or tensor")
        self.points = tuple(sorted(set(check_points(self.points))))
        self.batch = tuple(sorted(set(check_batch(self.batch))))
        self.output_dir = Path(self.output_dir)
        self.checkpoint = Path(self.checkpoint) if self.checkpoint is not None else None
        self.classifier = Path(self.classifier) if self.classifier is not None else None
        if self.input_size is not None:
            self.input_size = check_input_size(self.input_size)

    @property
    def extras(self) -> Dict[str, Path]:
        """Files besides the checkpoint, by the name `build_model` takes them."""
        return {"classifier": self.classifier} if self.classifier is not None else {}

    @property
    def variant_suffix(self) -> str:
        return compression(self.compress).suffix + ("FP32" if self.precision == "fp32" else "")


def refuse_ignored_options(chosen, given: Dict[str, bool], precision: str, every_target: bool) -> None:
    """A one-line UsageError for an option the user gave that a chosen target would ignore (under
    --target all: that no chosen target takes): `--precision` outside a target's `precisions`, and the
    options only some targets take (`ExportTarget.takes`)."""
    for flag, was_given in given.items():
        if not was_given:
            continue
        if flag == "--precision":
            ignoring = [t for t in chosen if precision not in t.precisions]
        else:
            ignoring = [t for t in chosen if flag not in t.takes]
        if ignoring and (not every_target or len(ignoring) == len(chosen)):
            value = f"{flag} {precision}" if flag == "--precision" else flag
            takers = [t.title for t in targets().values() if t not in ignoring]
            also = f"; it is for {spoken(takers, 'and')}" if takers else ""
            raise UsageError(
                f"{value} does not apply to {spoken([t.title for t in ignoring], 'or')} (their files are "
                f"written one way){also}: leave it out for {spoken([t.name for t in ignoring], 'and')}"
            )


def check_points(points) -> Tuple[int, ...]:
    """Point counts between 1 and MAX_POINTS (a box counts as 2), or a one-line UsageError."""
    if not points or any(p < 1 or p > MAX_POINTS for p in points):
        given = ",".join(map(str, points)) or "nothing"
        raise UsageError(
            f"--points must be point counts from 1 to {MAX_POINTS} (a box counts as 2), got {given}"
        )
    return tuple(points)


def check_batch(batch) -> Tuple[int, ...]:
    """Prompt-set counts between 1 and MAX_BATCH, including 1, or a one-line UsageError."""
    if not batch or 1 not in batch or any(b < 1 or b > MAX_BATCH for b in batch):
        given = ",".join(map(str, batch)) or "nothing"
        raise UsageError(
            f"--batch must be prompt-set counts from 1 to {MAX_BATCH} including 1 (e.g. "
            f"{','.join(map(str, EVERYTHING_BATCH))}), got {given}"
        )
    return tuple(batch)


def check_input_size(size) -> Tuple[int, int]:
    """(h, w), both multiples of 32 from 128 to 2048, or a one-line UsageError."""
    h, w = (int(v) for v in size)
    if not all(128 <= v <= 2048 and v % 32 == 0 for v in (h, w)):
        raise UsageError(f"--input-size must be HxW, each a multiple of 32 from 128 to 2048, got {h}x{w}")
    return h, w


def parse_size(text: str) -> Tuple[int, int]:
    """`800x1088` -> (800, 1088), or a one-line UsageError."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--input-size takes HxW like 800x1088, got {text!r}") from None
    return h, w


def parse_counts(text: str, flag: str) -> Tuple[int, ...]:
    """`1,2,5` -> (1, 2, 5), or a one-line UsageError naming `flag`."""
    try:
        return tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise UsageError(f"{flag} takes comma-separated integers like 1,2,3,5, got {text!r}") from None


def artifact_names(spec: "ModelSpec", options: ConvertOptions) -> Dict[Tuple[str, str], str]:
    """(target, part) -> file name of every chosen target's parts, and ("manifest", "") -> the manifest's."""
    known = targets()
    names = {("manifest", ""): manifest_name(spec.artifact_stem, options)}
    for name in options.targets:
        names.update({(name, part): file for part, file in known[name].file_names(spec, options).items()})
    return names
