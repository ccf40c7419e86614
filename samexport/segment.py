"""`samexport segment`: one photo through a chosen backend, prompts or everything mode, to a picture
and a JSON of the masks.

Prompts: every click and at most one box form one prompt set; several boxes form one prompt set each
(decoded in one batched call). A prompt set of one click alone is ambiguous, so the best of the three
multimask outputs is kept (the contract's rule); otherwise the single-mask output.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from .console import Progress
from .errors import InputError, UsageError
from .everything import EVERYTHING_DEFAULTS, EVERYTHING_FRACTIONS, EVERYTHING_RANGES
from .fsutil import OutputFiles
from .track_prompts import ObjectPrompt

# Every mask record of the JSON has these keys (None where the family or mode has no value): one schema.
RECORD_KEYS = (
    "segmentation",
    "area",
    "bbox",
    "predicted_iou",
    "stability_score",
    "mask_token",
    "point_coords",
    "crop_box",
    "category",
)
VIDEO_SUFFIX = ".mp4"
DEFAULT_SCORE_THRESHOLD = 0.5  # video instances drawn and written: score (class x mask) at least this
SEGMENT_FORMAT = "samexport.segment/2"  # /2: one record schema and timing names for every family
# Timings of every family under one set of names.
NUMPY_NOTE = (
    "note: Core ML prediction needs macOS on Apple silicon; running the packages' saved ML programs in NumPy "
    "instead (samexport.mileval, as validate does: the same numbers, far slower)"
)
TIMING_NAMES = {"setup": "build", "encoder": "encode", "decoder": "decode"}


def result_files(
    output: Path, json_path: Optional[Path], force: bool, source: Path, what: str
) -> OutputFiles:
    """The picture (or video) and the JSON: checked before any work, written together at the end; neither
    may be the input nor each other."""
    files = OutputFiles([output, json_path], force)
    for path in files.paths:
        if path.resolve() == Path(source).resolve():
            raise UsageError(f"{path} is the input {what}; choose another output name")
    if json_path and json_path.resolve() == output.resolve():
        raise UsageError("--json and --output name the same file")
    return files


def backend_names() -> Tuple[str, ...]:
    """`torch` (the model itself) and every export target (its files run by the target's runner)."""
    from .export.target import targets

    return ("torch", *targets())


@dataclass
class SegmentOptions:
    """What to segment and where the results go; checked before any work."""

    image: Path
    encoder: str
    output: Path
    checkpoint: Optional[Path] = None
    points: List[Tuple[float, float, int]] = field(default_factory=list)
    boxes: List[Tuple[float, float, float, float]] = field(default_factory=list)
    everything: bool = False
    backend: str = "torch"
    models_dir: Path = Path("models")
    json_path: Optional[Path] = None
    classifier: Optional[Path] = None  # RAP-SAM's class embeddings (panoptic --everything)
    force: bool = False
    generator_kwargs: Dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        from .families import PromptFamily
        from .families.registry import get_spec

        backends = backend_names()
        if self.backend not in backends:
            raise UsageError(f"unknown --backend {self.backend!r}; choose one of: {', '.join(backends)}")
        spec = get_spec(self.encoder)
        if not isinstance(spec.family, PromptFamily):
            raise UsageError(f"{spec.name} takes no clicks or boxes: segment images with a model that does")
        if self.everything == bool(self.points or self.boxes):
            raise UsageError("give prompts (--point/--box) or --everything, exactly one of the two")
        if len(self.boxes) > 1 and self.points:
            raise UsageError(
                "--point with several --box is ambiguous: give one box with its clicks, or boxes alone "
                "(one mask per box)"
            )
        if self.output.suffix.lower() != ".png":
            raise UsageError(f"--output must be a .png file, got {self.output}")
        self.files = result_files(self.output, self.json_path, self.force, self.image, "image")
        self.check_everything_options()
        self.files.check()

    def check_everything_options(self) -> None:
        """Everything-mode options are for SAM-style --everything alone, and within the ranges it runs;
        an option that would be ignored is refused, not ignored."""
        from .families.registry import get_spec

        for name, value in self.generator_kwargs.items():
            low, high = EVERYTHING_RANGES.get(name, (None, None))
            if low is not None and not (isinstance(value, int) and low <= value <= high):
                raise UsageError(f"--{name.replace('_', '-')} takes {low} to {high}, got {value}")
            if isinstance(value, float) and not math.isfinite(value):
                raise UsageError(f"--{name.replace('_', '-')} takes a finite number, got {value}")
            if name in EVERYTHING_FRACTIONS and not 0 <= value <= 1:
                raise UsageError(
                    f"--{name.replace('_', '-')} takes 0 to 1 (a score fraction; 0 turns the filter off), "
                    f"got {value}"
                )
        changed = [k for k, v in self.generator_kwargs.items() if v != EVERYTHING_DEFAULTS.get(k)]
        if not changed:
            return
        flag = "--" + changed[0].replace("_", "-")
        if not self.everything:
            raise UsageError(f"{flag} is an everything-mode option; add --everything or drop {flag}")
        refusal = get_spec(self.encoder).family.everything_refusal
        if refusal:
            raise UsageError(f"{flag} is an option of the click-grid everything mode; {refusal}; drop {flag}")

    @property
    def extras(self) -> Dict[str, Path]:
        return {"classifier": self.classifier} if self.classifier is not None else {}


@dataclass
class VideoSegmentOptions:
    """What to segment and where the results go; checked before any work. A tracker follows `prompts`'
    objects; other video families segment every instance."""

    video: Path
    encoder: str
    output: Path
    json_path: Optional[Path] = None
    checkpoint: Optional[Path] = None
    classifier: Optional[Path] = None
    backend: str = "torch"
    models_dir: Path = Path("models")
    score_threshold: float = DEFAULT_SCORE_THRESHOLD
    force: bool = False
    memory_budget_gb: Optional[float] = None  # None: the memory this machine has free when the run starts
    prompts: Tuple[ObjectPrompt, ...] = ()

    def __post_init__(self) -> None:
        from .families.registry import get_spec, list_models

        spec = get_spec(self.encoder)
        if spec.family.segmenter("video") is None:
            videos = [s.name for s in map(get_spec, list_models()) if s.family.segmenter("video") is not None]
            raise UsageError(
                f"--video segments videos with {', '.join(videos)}; {spec.name} segments images only"
            )
        if spec.family.tracks_prompted_objects and not self.prompts:
            raise UsageError(
                f"--video with {spec.name} tracks the objects you prompt: give --point/--box (on frame 0) "
                "or --prompts FILE.json"
            )
        if not spec.family.tracks_prompted_objects and self.prompts:
            raise UsageError(
                f"--video with {spec.name} segments every instance of the clip; drop --point, --box and "
                "--prompts"
            )
        backends = backend_names()
        if self.backend not in backends:
            raise UsageError(f"unknown --backend {self.backend!r}; choose one of: {', '.join(backends)}")
        if self.output.suffix.lower() != VIDEO_SUFFIX:
            raise UsageError(f"--output must be an {VIDEO_SUFFIX} file with --video, got {self.output}")
        if not (0.0 <= self.score_threshold <= 1.0):
            raise UsageError(f"--score-threshold takes 0 to 1, got {self.score_threshold}")
        if self.memory_budget_gb is not None and not (0 < self.memory_budget_gb <= 4096):
            raise UsageError(f"--memory-budget takes gigabytes from 0 to 4096, got {self.memory_budget_gb}")
        self.files = result_files(self.output, self.json_path, self.force, self.video, "video")
        self.files.check()

    @property
    def extras(self) -> Dict[str, Path]:
        return {"classifier": self.classifier} if self.classifier is not None else {}


def parse_point(text: str) -> Tuple[float, float, int]:
    """`X,Y` (positive) or `X,Y,LABEL` with LABEL 1 (positive) or 0 (negative)."""
    parts = text.split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if (
        len(values) not in (2, 3)
        or not all(math.isfinite(v) for v in values)
        or (len(values) == 3 and values[2] not in (0.0, 1.0))
    ):
        raise UsageError(f"--point takes X,Y or X,Y,LABEL with LABEL 1 or 0, got {text!r}")
    return values[0], values[1], int(values[2]) if len(values) == 3 else 1


def parse_box(text: str) -> Tuple[float, float, float, float]:
    try:
        values = tuple(float(p) for p in text.split(","))
    except ValueError:
        values = ()
    if (
        len(values) != 4
        or not all(math.isfinite(v) for v in values)
        or values[0] >= values[2]
        or values[1] >= values[3]
    ):
        raise UsageError(f"--box takes X0,Y0,X1,Y1 with X0 < X1 and Y0 < Y1, got {text!r}")
    return values


# Masks come back at the photo's size (several float copies of it while upscaling): past this many pixels
# a small compressed file would cost gigabytes. A 48 MP phone photo fits.
MAX_IMAGE_PIXELS = 50_000_000
# The model sees the photo with its longest side at about a thousand pixels.
MODEL_SIDE = 1024


def load_image(path: Path, notes: Optional[List[str]] = None) -> np.ndarray:
    """An image file -> HxWx3 uint8 RGB, EXIF orientation applied. 16-bit images are scaled to 8 bits (not
    saturated); an alpha channel is dropped (said in `notes`). The size is checked from the header,
    before decoding."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise InputError(
                    f"{path} is {width}x{height} ({width * height / 1e6:.0f} MP), more than the "
                    f"{MAX_IMAGE_PIXELS / 1e6:.0f} MP samexport segments; downscale it first (the model sees "
                    f"about {MODEL_SIDE} px on the longest side anyway)"
                )
            if min(width, height) * MODEL_SIDE < max(width, height):
                raise InputError(
                    f"{path} is {width}x{height}: at the model's {MODEL_SIDE} px its short side would be "
                    "under one pixel; crop or pad it to a less extreme shape"
                )
            image = ImageOps.exif_transpose(image)
            if "A" in image.getbands() and notes is not None:
                notes.append(f"{path.name} has an alpha channel; it is dropped (the model takes RGB)")
            if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
                wide = np.asarray(image, dtype=np.float64)
                gray = np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8)  # 16-bit -> 8-bit
                return np.repeat(gray[..., None], 3, axis=-1)
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise UsageError(f"image {path} does not exist") from None
    except Image.DecompressionBombError:
        raise InputError(f"{path} declares more pixels than Pillow will decode; downscale it first") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InputError(
            f"{path} is not an image Pillow can read ({type(e).__name__}); give a PNG or JPEG"
        ) from None


def check_prompts_inside(options: SegmentOptions, hw: Tuple[int, int]) -> None:
    h, w = hw
    for x, y, _ in options.points:
        if not (0 <= x <= w and 0 <= y <= h):
            raise InputError(f"--point {x:g},{y:g} lies outside the {w}x{h} image")
    for x0, y0, x1, y1 in options.boxes:
        if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
            raise InputError(f"--box {x0:g},{y0:g},{x1:g},{y1:g} reaches outside the {w}x{h} image")


def make_predictor(options: SegmentOptions, progress: Progress):
    """The chosen backend's predictor; exports come from --models-dir and are converted when missing."""
    if options.backend == "torch":
        from .predictor import TorchPredictor
        from .zoo import build_model_noting

        model, notes = build_model_noting(options.encoder, options.checkpoint)
        for note in notes:
            progress.say(f"warning: {note}")
        return TorchPredictor(model)
    manifest = exports_for(options, progress)
    from .export.coreml_runner import NumpyRunner
    from .export.runtimes import ExportPredictor

    predictor = ExportPredictor(manifest, options.backend)
    if isinstance(predictor.decoder, NumpyRunner):
        progress.say(NUMPY_NOTE)
    return predictor


def open_session(options, progress: Progress, **convert_fields):
    """The chosen backend's session of every part (`runtime.Session`): PyTorch's modules, or the export in
    --models-dir (converted first when there is none, with `convert_fields` such as the input size)."""
    if options.backend == "torch":
        from .zoo import torch_session

        session, notes = torch_session(options.encoder, options.checkpoint, **options.extras)
        for note in notes:
            progress.say(f"warning: {note}")
        return session
    from .export.coreml_runner import NumpyRunner
    from .export.runtimes import open_session as open_export_session

    manifest = exports_for(options, progress, **convert_fields)
    session = open_export_session(manifest, options.backend)
    if any(isinstance(runner, NumpyRunner) for runner in session.runners.values()):
        progress.say(NUMPY_NOTE)
    return session


def segment_video(options: VideoSegmentOptions, quiet: bool = False) -> Dict:
    """`segment --video`: the family's video run, which checks the clip first and then opens the chosen
    backend's session with the convert options the clip needs (`open(**fields)`)."""
    from .families.registry import get_spec

    progress = Progress(quiet=quiet)

    def opener(**fields):
        return open_session(options, progress, **fields)

    return get_spec(options.encoder).family.segmenter("video")(options, opener, quiet=quiet)


def exports_for(options, progress: Progress, **convert_fields) -> Path:
    """The export manifest in --models-dir for this model and backend (of any precision the target writes,
    its default first), converted first when there is none; refused when it was made from other weights
    than the ones asked for, or when it is incomplete (segment never replaces an export: --force is for
    segment's own outputs)."""
    from .export.convert import convert
    from .export.options import EVERYTHING_BATCH, ConvertOptions, artifact_names
    from .export.outputs import manifest_files
    from .export.runtimes import read_manifest
    from .export.target import targets
    from .families.registry import get_spec
    from .provenance import sha256

    target = targets()[options.backend]
    spec = get_spec(options.encoder)
    # a target taking fixed prompt-set counts gets the everything mode's (64 prompt sets a call) for a family
    # with a click-grid everything mode
    from .families import PromptFamily

    grid = isinstance(spec.family, PromptFamily) and not spec.family.prompts_are_queries
    batch = EVERYTHING_BATCH if grid and not target.dynamic else (1,)
    wanted = sha256(options.checkpoint) if options.checkpoint else "random-init"
    candidates = [
        ConvertOptions(
            encoder=options.encoder,
            target=options.backend,
            checkpoint=options.checkpoint,
            output_dir=options.models_dir,
            batch=batch,
            precision=precision,
            classifier=options.classifier,
            **convert_fields,
        )
        for precision in (None, *target.precisions)  # the default first, then each named (--precision X)
    ]
    for convert_options in candidates:
        names = artifact_names(spec, convert_options)
        manifest_path = options.models_dir / names[("manifest", "")]
        if not manifest_path.exists():
            continue
        manifest = read_manifest(manifest_path)
        made_from = manifest.get("checkpoint", {}).get("sha256")
        listed = manifest_files(manifest)
        if not listed.get(target.name):
            continue  # another target's export: this one is converted beside it
        missing = [
            f"{part} ({file})"
            for (kind, part), file in names.items()
            if kind != "manifest"
            and not (
                part in listed.get(kind, {}) and (options.models_dir / listed[kind][part]["path"]).exists()
            )
        ]
        if missing:
            raise UsageError(
                f"{manifest_path} lists an incomplete {target.title} export ({', '.join(missing)} missing); "
                f"re-export it with samexport convert --encoder {spec.name} --target {target.name} --force "
                "(with the --checkpoint it was made from) or give another --models-dir"
            )
        if made_from != wanted:
            raise UsageError(
                f"{manifest_path} was exported from {str(made_from)[:12]}, not from {str(wanted)[:12]}; "
                f"give another --models-dir or re-export with samexport convert --force"
            )
        return manifest_path
    convert_options = candidates[0]
    names = artifact_names(spec, convert_options)
    for (kind, _), file in names.items():
        if kind != "manifest" and (options.models_dir / file).exists():
            raise UsageError(
                f"{options.models_dir / file} exists but no manifest in {options.models_dir} lists it; "
                f"re-export it with samexport convert --encoder {spec.name} --target {target.name} --force "
                "or give another --models-dir"
            )
    progress.say(f"no {options.backend} export of {spec.name} in {options.models_dir}: converting it first")
    convert(convert_options, quiet=False)
    return options.models_dir / names[("manifest", "")]


def segment(options: SegmentOptions, quiet: bool = False) -> Dict:
    """Run, draw, write; returns the JSON document (also written to --json when given)."""
    from .families.registry import get_spec

    progress = Progress(quiet=quiet)
    notes: List[str] = []
    image = load_image(options.image, notes)
    for note in notes:
        progress.say(f"note: {note}")
    check_prompts_inside(options, image.shape[:2])
    own = get_spec(options.encoder).family.segmenter("image")
    if own is None:
        records, timings, title, backend, owners = _sam_style(options, image, progress)
    else:
        start = time.perf_counter()
        with open_session(options, progress) as session:
            build = time.perf_counter() - start
            records, timings, title, backend, owners = own(options, image, session, progress)
        timings = {"build": build, **timings}
    from .amg import encode_rle
    from .overlay import draw_overlay, mask_label

    if options.checkpoint is None:
        title += " (fixture weights, no checkpoint: the masks are meaningless)"
    draw_start = time.perf_counter()
    masks = [r.pop("segmentation") for r in records]
    picture = draw_overlay(
        image,
        masks,
        [mask_label(i, r) for i, r in enumerate(records)],
        points=[(x, y) for x, y, _ in options.points],
        point_labels=[label for _, _, label in options.points],
        boxes=options.boxes,
        title=title,
        point_masks=owners[0],
        box_masks=owners[1],
    )
    rles = encode_rle(np.stack(masks)) if masks else []
    timings = {**timings, "draw": time.perf_counter() - draw_start}
    timings = {TIMING_NAMES.get(k, k): v for k, v in timings.items()}
    records = [{key: record.get(key) for key in RECORD_KEYS if key != "segmentation"} for record in records]
    document = {
        "format": SEGMENT_FORMAT,
        "image": str(options.image),
        "size_hw": list(image.shape[:2]),
        "model": options.encoder,
        "backend": backend,
        "checkpoint": str(options.checkpoint) if options.checkpoint else None,
        "mode": "everything" if options.everything else "prompts",
        "prompts": {"points": [list(p) for p in options.points], "boxes": [list(b) for b in options.boxes]},
        "generator": options.generator_kwargs if options.everything and own is None else None,
        "masks": [{"segmentation": rle, **r} for r, rle in zip(records, rles)],
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
    }
    items = {options.output: lambda f: picture.save(f, format="PNG")}
    if options.json_path:
        text = json.dumps(document, indent=1) + "\n"
        items[options.json_path] = lambda f: f.write(text)
    options.files.write(items, binary=[options.output])
    return document


def _sam_style(options: SegmentOptions, image: np.ndarray, progress: Progress):
    """SAM-style families: (records, timings, title, backend) through the chosen backend's predictor."""
    from .families.registry import get_spec

    if options.classifier is not None:
        raise UsageError(f"--classifier is for RAP-SAM (rapsam_r50); {options.encoder} takes none")
    refusal = get_spec(options.encoder).family.everything_refusal
    if options.everything and refusal:  # before a model is built or a warning printed
        raise InputError(refusal)
    start = time.perf_counter()
    predictor = make_predictor(options, progress)
    setup = time.perf_counter() - start
    if options.everything:
        records, timings, title = _everything(predictor, image, options, progress)
    else:
        records, timings, title = _prompted(predictor, image, options)
    # which mask each prompt asked for: several boxes, one mask each; else every click and the box, mask 0
    several = len(options.boxes) > 1
    owners = (
        [0] * len(options.points),
        list(range(len(options.boxes))) if several else [0] * len(options.boxes),
    )
    return records, {"setup": setup, **timings}, title, predictor.name, owners


def _prompted(predictor, image: np.ndarray, options: SegmentOptions):
    import torch

    from . import amg
    from .families.registry import get_spec

    hw = image.shape[:2]
    family = predictor.family
    predictor.set_image(image)
    prompt_sets = (
        [(options.points, box) for box in options.boxes]
        if len(options.boxes) > 1
        else [(options.points, options.boxes[0] if options.boxes else None)]
    )
    limit = family.max_prompt_tokens
    given = max(len(clicks) + 2 * (box is not None) for clicks, box in prompt_sets)
    if limit is not None and given > limit:
        raise InputError(
            f"{options.encoder} takes at most {limit} prompt tokens (a click is one, a box two); {given} "
            "were given: drop some (the official model would ignore the rest without a word)"
        )
    shapes_only = get_spec(options.encoder).build_meta()  # prompt_tokens needs no weights
    coords, labels = zip(*(_tokens(shapes_only, hw, clicks, box) for clicks, box in prompt_sets))
    low_res, iou = predictor.predict(torch.cat(coords), torch.cat(labels))
    post = time.perf_counter()
    ambiguous = len(options.points) == 1 and not options.boxes
    token = (1 + iou[:, 1:].argmax(dim=1)) if ambiguous else torch.zeros(len(iou), dtype=torch.long)
    rows = torch.arange(len(iou))
    logits = family.postprocess_masks(low_res[rows, token][:, None], hw)[:, 0]
    masks = logits > 0
    boxes = amg.masks_to_boxes(masks).tolist()
    records = [
        {
            "segmentation": masks[i].numpy(),
            "area": int(masks[i].sum()),
            "bbox": amg.xyxy_to_xywh(boxes[i]),
            "predicted_iou": float(iou[i, token[i]]),
            "mask_token": int(token[i]),
            "stability_score": None,
        }
        for i in range(len(iou))
    ]
    timings = {**predictor.timings, "postprocess": time.perf_counter() - post}
    return records, timings, f"{options.encoder} on {predictor.name}: {len(records)} prompted mask(s)"


def _tokens(model, hw, clicks, box):
    """One prompt set in the family's token layout (model frame), as (1, T, 2), (1, T) tensors."""
    import torch

    points = [[x, y] for x, y, _ in clicks] or None
    labels = [label for _, _, label in clicks] or None
    coords, token_labels = model.prompt_tokens(hw, points=points, labels=labels, box=box)
    return coords.to(torch.float32), token_labels.to(torch.int64)


def _everything(predictor, image: np.ndarray, options: SegmentOptions, progress: Progress):
    from .mask_generator import MaskGenerator

    if predictor.slowness:
        progress.say(f"note: {predictor.slowness}")
    with progress.bar("everything mode: decoding the point grid") as advance:
        generator = MaskGenerator(
            predictor, output_mode="binary_mask", progress=advance, **options.generator_kwargs
        )
        records = generator.generate(image)
    timings = {k: v for k, v in generator.timings.items() if k != "total"}
    counts = generator.stage_counts
    title = (
        f"{options.encoder} on {predictor.name}, everything: {counts['candidates']} candidates -> "
        f"{counts['after_iou']} IoU -> {counts['after_stability']} stability -> {counts['after_crop_edge']} "
        f"crop edge -> {counts['after_box_nms']} box NMS -> {len(records)} masks"
    )
    return records, timings, title
