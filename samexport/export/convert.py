"""`samexport convert`: build, reparameterize, export, validate and describe, all or nothing.

Every artifact is written into a temporary folder inside the output folder and moved into
place only after every export of the run has been written and validated.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import platform
import shutil
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch

from .. import transforms
from ..errors import SamExportError, UsageError
from ..registry import ModelSpec, get_spec
from ..reparam import reparameterize_model
from . import coreml_check, coreml_export, onnx_export
from .compare import compare, worst
from .samples import validation_image, validation_prompts
from .wrappers import EfficientSamDecoderForExport, EncoderForExport, SamDecoderForExport, decoder_feeds

DEFAULT_POINTS = (1, 2, 3, 4, 5, 8, 16)
TARGETS = ("coreml", "onnx", "all")
# The ONNX bars are the Core ML check's (coreml_check): fp32 exports agree with PyTorch to 1e-4 of
# max |ref|; int8 ONNX is refused below the floor every lossy weight compression is held to.
FP32_REL_TOL = coreml_check.FP32_EVAL_MAX_REL
INT8_MIN_COSINE = coreml_check.COMPRESSED_MIN_COSINE
INT8_MIN_PSNR_DB = coreml_check.COMPRESSED_MIN_PSNR_DB
ONNX_SINGLE_FILE_LIMIT = 2 ** 31 - 64 * 2 ** 20  # protobuf's 2 GiB, less room for the graph
VARIANT_SUFFIX = {"none": "", "int8": "Int8", "palettize8": "Palettized8", "palettize6": "Palettized6",
                  "palettize4": "Palettized4"}


@dataclass
class ConvertOptions:
    encoder: str
    target: str = "coreml"
    checkpoint: Path | None = None
    output_dir: Path = Path("models")
    precision: str = "fp16"
    compress: str = "none"
    points: Tuple[int, ...] = DEFAULT_POINTS
    image_input: str = "image"
    min_target: str = "iOS16"
    force: bool = False
    validate: bool = True
    targets: Tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.target = self.target.lower()
        if self.target not in TARGETS:
            raise UsageError(f"unknown --target {self.target!r}; choose one of: {', '.join(TARGETS)}")
        self.targets = ("coreml", "onnx") if self.target == "all" else (self.target,)
        if self.precision not in ("fp16", "fp32"):
            raise UsageError(f"unknown --precision {self.precision!r}; choose fp16 or fp32")
        if self.compress not in coreml_export.COMPRESSIONS:
            raise UsageError(f"unknown --compress {self.compress!r}; choose one of: "
                             f"{', '.join(coreml_export.COMPRESSIONS)}")
        if self.compress.startswith("palettize") and "coreml" not in self.targets:
            raise UsageError(f"--compress {self.compress} is Core ML only; use --target coreml or all, "
                             "or --compress int8 for ONNX")
        if self.min_target not in coreml_export.MIN_TARGETS:
            raise UsageError(f"unknown --min-target {self.min_target!r}; choose one of: "
                             f"{', '.join(coreml_export.MIN_TARGETS)}")
        if self.image_input not in ("image", "tensor"):
            raise UsageError(f"unknown --image-input {self.image_input!r}; choose image or tensor")
        if not self.points or any(p < 1 for p in self.points):
            raise UsageError(f"--points must be positive point counts (a box counts as 2), got "
                             f"{','.join(map(str, self.points)) or 'nothing'}")
        self.points = tuple(sorted(set(self.points)))
        self.output_dir = Path(self.output_dir)
        self.checkpoint = Path(self.checkpoint) if self.checkpoint is not None else None


def parse_points(text: str) -> Tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise UsageError(f"--points takes comma-separated integers like 1,2,3,5, got {text!r}") from None


def token_counts(spec: ModelSpec, points: Tuple[int, ...]) -> List[int]:
    """Decoder token counts that make every prompt of `points` points exact.

    SAM: clicks alone get one padding token (P + 1 tokens); with a box (2 of the points) none (P).
    EfficientSAM: always 6 tokens, as the official model pads or cuts to 6.
    """
    if spec.style == "efficientsam":
        return [transforms.EFFICIENT_SAM_MAX_POINTS]
    return sorted({p + 1 for p in points} | {p for p in points if p >= 2})


def artifact_names(spec: ModelSpec, options: ConvertOptions) -> Dict[str, str]:
    suffix = VARIANT_SUFFIX[options.compress] + ("FP32" if options.precision == "fp32" else "")
    base = spec.swift_name
    names = {"manifest": f"{base}{suffix}.export.json"}
    if "coreml" in options.targets:
        names["coreml_encoder"] = f"{base}Encoder{suffix}.mlpackage"
        names["coreml_decoder"] = f"{base}Decoder{suffix}.mlpackage"
    if "onnx" in options.targets:
        onnx_suffix = "Int8" if options.compress == "int8" else ""
        names["onnx_encoder"] = f"{base}Encoder{onnx_suffix}.onnx"
        names["onnx_decoder"] = f"{base}Decoder{onnx_suffix}.onnx"
    return names


def versions() -> Dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("samexport", "torch", "coremltools", "onnx", "onnxruntime", "onnxsim", "numpy"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tree_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class Progress:
    """Timed steps with a live spinner on stderr."""

    def __init__(self, quiet: bool = False) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, quiet=quiet, soft_wrap=True)
        self.timings: Dict[str, float] = {}

    def say(self, text: str) -> None:
        self.console.print(text, highlight=False)

    @contextmanager
    def step(self, name: str):
        start = time.perf_counter()
        with self.console.status(f"{name} ..."):
            yield
        seconds = time.perf_counter() - start
        self.timings[name] = round(seconds, 2)
        self.say(f"  {name}: {seconds:.1f} s")


@dataclass
class Reference:
    """PyTorch outputs of the official (unfused) model on the validation inputs."""

    image: np.ndarray
    tensor: torch.Tensor
    embeddings: torch.Tensor
    prompts: List[Tuple[str, torch.Tensor, torch.Tensor, torch.Tensor | None]]
    outputs: Dict[str, Tuple[np.ndarray, np.ndarray]]


def make_reference(model, spec: ModelSpec) -> Reference:
    image = validation_image()
    hw = image.shape[:2]
    tensor = model.preprocess(image)
    with torch.no_grad():
        embeddings = model.image_encoder(tensor)
    prompts = []
    for name, kwargs in validation_prompts(*hw):
        coords, labels = model.prompt_tokens(hw, **kwargs)
        prompts.append((name, coords, labels, None))
    if spec.style == "sam":
        first_masks, _ = model.decode(embeddings, prompts[0][1], prompts[0][2])
        prompts.append(("click + mask prompt", prompts[0][1], prompts[0][2], first_masks[:, 1:2]))
    outputs = {}
    for name, coords, labels, mask in prompts:
        masks, iou = model.decode(embeddings, coords, labels, mask_input=mask)
        outputs[name] = (masks.numpy(), iou.numpy())
    return Reference(image, tensor, embeddings, prompts, outputs)


def decoder_module(fused, spec: ModelSpec, packed: bool):
    cls = SamDecoderForExport if spec.style == "sam" else EfficientSamDecoderForExport
    return cls(fused, packed_points=packed).eval()


def decoder_example(spec: ModelSpec, tokens: int, packed: bool) -> Tuple[torch.Tensor, ...]:
    embeddings = torch.zeros(1, 256, 64, 64)
    prompt = (torch.zeros(1, tokens, 3),) if packed else (torch.zeros(1, tokens, 2), torch.ones(1, tokens))
    if spec.style == "sam":
        prompt += (torch.zeros(1, 1, 256, 256), torch.zeros(1))
    return (embeddings,) + prompt


def decoder_input_names(spec: ModelSpec, packed: bool) -> List[str]:
    names = ["imageEmbeddings"] + (["points"] if packed else ["pointCoords", "pointLabels"])
    return names + (["maskInput", "hasMaskInput"] if spec.style == "sam" else [])


def fail(message: str) -> None:
    raise SamExportError(message)


class Converter:
    def __init__(self, options: ConvertOptions, progress: Progress) -> None:
        self.options = options
        self.progress = progress
        self.spec = get_spec(options.encoder)
        self.names = artifact_names(self.spec, options)
        self.tokens = token_counts(self.spec, options.points)
        self.manifest: Dict = {}

    # -- preparation -------------------------------------------------------------------------
    def check_outputs(self) -> None:
        out = self.options.output_dir
        if out.exists() and not out.is_dir():
            raise UsageError(f"--output-dir {out} is a file; pass a folder")
        existing = [n for n in self.names.values() if (out / n).exists()]
        if existing and not self.options.force:
            raise UsageError(f"{out / existing[0]} already exists; pass --force to replace it "
                             f"(or --output-dir elsewhere)")

    def check_onnx_size(self) -> None:
        """Refuse, before any work, an ONNX encoder too large for one protobuf file (SAM ViT-H)."""
        if "onnx" not in self.options.targets:
            return
        from ..checkpoint import expected_layout

        weight_bytes = 4 * sum(math.prod(shape) for key, shape in expected_layout(self.spec.name).items()
                               if key.startswith("image_encoder."))
        if weight_bytes >= ONNX_SINGLE_FILE_LIMIT:
            raise UsageError(f"the {self.spec.name} ONNX encoder would hold {weight_bytes / 1e9:.2f} GB of float32 "
                             f"weights, over protobuf's 2 GB single-file limit (it would need external data "
                             f"files); use --target coreml for this model")

    def make_workdir(self) -> Path:
        out = self.options.output_dir
        try:
            out.mkdir(parents=True, exist_ok=True)
            return Path(tempfile.mkdtemp(prefix=".samexport-", dir=out))
        except OSError as e:
            raise UsageError(f"cannot write to --output-dir {out} ({e.strerror or e}); choose a writable folder") \
                from None

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> Dict:
        from .. import RandomWeightsWarning, build_model

        self.check_outputs()
        self.check_onnx_size()
        spec, progress = self.spec, self.progress
        progress.say(f"samexport convert {spec.name} -> {', '.join(self.options.targets)} "
                     f"in {self.options.output_dir}")
        with progress.step("build model"), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RandomWeightsWarning)
            model = build_model(spec.name, self.options.checkpoint)
            fused = reparameterize_model(model)
        for w in caught:
            progress.say(f"warning: {w.message}")
        self.model = model
        work = self.make_workdir()
        try:
            with progress.step("reference outputs (PyTorch, official model)"):
                reference = make_reference(model, spec)
            fusion = self.fusion_error(fused, reference)
            self.manifest = self.base_manifest(fusion)
            if "onnx" in self.options.targets:
                self.export_onnx(fused, reference, work)
            if "coreml" in self.options.targets:
                self.export_coreml(fused, reference, work)
            self.manifest["timings_s"] = progress.timings
            (work / self.names["manifest"]).write_text(json.dumps(self.manifest, indent=2) + "\n")
            self.move_into_place(work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return self.manifest

    def fusion_error(self, fused, reference: Reference) -> Dict:
        count = getattr(fused, "num_fused_modules", 0)
        result = {"fused_modules": count,
                  "batchnorm_left": sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in fused.modules())}
        if not count:
            result["encoder_error_vs_unfused"] = "not measured: no module was replaced"
            return result
        with self.progress.step("fused encoder check"), torch.no_grad():
            out = fused.image_encoder(reference.tensor)
        result["encoder_error_vs_unfused"] = compare(out.numpy(), reference.embeddings.numpy())
        return result

    def base_manifest(self, fusion: Dict) -> Dict:
        spec, options = self.spec, self.options
        checkpoint = ({"path": str(options.checkpoint), "sha256": sha256(options.checkpoint)}
                      if options.checkpoint else {"path": None, "sha256": "random-init"})
        opts = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()}
        return {
            "format": "samexport.export/1",
            "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "model": {"name": spec.name, "title": spec.title, "style": spec.style, "swift_name": spec.swift_name,
                      "variant": {"precision": options.precision, "compress": options.compress}},
            "checkpoint": checkpoint,
            "versions": versions(),
            "machine": {"platform": platform.platform(), "processor": platform.machine(),
                        "cpus": os.cpu_count()},
            "options": opts,
            "reparameterization": fusion,
            "input_contract": transforms.input_contract(spec.style),
            "decoder_prompt": {"points": list(options.points), "token_counts": self.tokens},
            "files": {},
            "validation": {},
        }

    def record_file(self, key: str, path: Path) -> None:
        self.manifest["files"][key] = {"path": path.name, "bytes": tree_bytes(path)}

    def move_into_place(self, work: Path) -> None:
        """Artifacts first, the manifest last: a manifest never describes files that are not there."""
        out = self.options.output_dir
        names = [n for key, n in self.names.items() if key != "manifest"] + [self.names["manifest"]]
        for name in names:
            target = out / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            os.replace(work / name, target)
            self.progress.say(f"  wrote {target}")

    # -- ONNX ----------------------------------------------------------------------------------
    def export_onnx(self, fused, reference: Reference, work: Path) -> None:
        spec, progress = self.spec, self.progress
        raw_encoder, raw_decoder = work / "encoder.raw.onnx", work / "decoder.raw.onnx"
        encoder_path, decoder_path = work / self.names["onnx_encoder"], work / self.names["onnx_decoder"]
        with progress.step("ONNX encoder export"):
            onnx_export.export(EncoderForExport(fused.image_encoder), (torch.zeros(1, 3, 1024, 1024),),
                               raw_encoder, ["image"], ["imageEmbeddings"])
        dynamic = {} if spec.style == "efficientsam" else {"pointCoords": {1: "numPoints"},
                                                           "pointLabels": {1: "numPoints"}}
        with progress.step("ONNX decoder export"):
            onnx_export.export(decoder_module(fused, spec, packed=False), decoder_example(spec, self.tokens[0], False),
                               raw_decoder, decoder_input_names(spec, False), ["lowResMasks", "iouScores"], dynamic)
        info: Dict = {"opset": onnx_export.OPSET, "encoder": {}, "decoder": {
            "point_inputs": "pointCoords (1, N, 2) and pointLabels (1, N) float32",
            "num_points": "dynamic" if dynamic else f"fixed {self.tokens[0]} tokens"}}
        if self.options.compress == "int8":
            with progress.step("ONNX int8 quantization"):
                for raw, final, part in ((raw_encoder, encoder_path, "encoder"), (raw_decoder, decoder_path, "decoder")):
                    info[part]["quantization"] = onnx_export.quantize_int8(raw, final)
                    info[part]["simplified"] = False
                    info[part]["graph"] = "quantized from the unsimplified graph (onnxsim output cannot be quantized)"
        else:
            with progress.step("ONNX simplification"):
                for raw, final, part in ((raw_encoder, encoder_path, "encoder"), (raw_decoder, decoder_path, "decoder")):
                    onnx_export.copy_model(raw, final)
                    simplified, note = onnx_export.simplify(final)
                    info[part].update({"simplified": simplified, "graph": note})
        self.record_file("onnx_encoder", encoder_path)
        self.record_file("onnx_decoder", decoder_path)
        self.manifest["onnx"] = info
        if self.options.validate:
            with progress.step("ONNX validation (onnxruntime vs PyTorch)"):
                self.manifest["validation"]["onnx"] = self.validate_onnx(encoder_path, decoder_path, reference)
        else:
            self.manifest["validation"]["onnx"] = {"skipped": "--no-validate"}

    def validate_onnx(self, encoder_path: Path, decoder_path: Path, reference: Reference) -> Dict:
        spec = self.spec
        embeddings = onnx_export.run(encoder_path, {"image": reference.tensor.numpy()})[0]
        encoder_result = compare(embeddings, reference.embeddings.numpy())
        decoder_session = onnx_export.session(decoder_path)
        cases = {}
        ref_embeddings = reference.embeddings.numpy()
        for name, coords, labels, mask in reference.prompts:
            feeds = decoder_feeds(spec, ref_embeddings, coords, labels, mask, packed=False)
            masks, iou = decoder_session.run(None, feeds)
            ref_masks, ref_iou = reference.outputs[name]
            cases[name] = {"lowResMasks": compare(masks, ref_masks), "iouScores": compare(iou, ref_iou)}
        decoder_result = {"cases": cases,
                          "worst_masks": worst({k: v["lowResMasks"] for k, v in cases.items()}),
                          "worst_iou": worst({k: v["iouScores"] for k, v in cases.items()})}
        result = {"encoder": encoder_result, "decoder": decoder_result, "reference": "unfused PyTorch model"}
        if self.options.compress == "int8":
            result["floor"] = {"min_cosine": INT8_MIN_COSINE, "min_psnr_db": INT8_MIN_PSNR_DB}
            for part, r in (("encoder", encoder_result), ("decoder masks", decoder_result["worst_masks"])):
                if r["cosine"] < INT8_MIN_COSINE or r["psnr_db"] < INT8_MIN_PSNR_DB or r["non_finite"]:
                    fail(f"int8 ONNX {part} falls below the quality floor (cosine {r['cosine']:.3f}, PSNR "
                         f"{r['psnr_db']:.1f} dB; floor {INT8_MIN_COSINE}, {INT8_MIN_PSNR_DB} dB); "
                         "use --compress none for ONNX")
        else:
            result["tolerance"] = {"max_rel": FP32_REL_TOL}
            for part, r in (("encoder", encoder_result), ("decoder masks", decoder_result["worst_masks"]),
                            ("decoder IoU", decoder_result["worst_iou"])):
                if not r["rel"] <= FP32_REL_TOL:
                    fail(f"ONNX {part} differs from PyTorch: max error {r['rel']:.2e} of max |ref| "
                         f"(tolerance {FP32_REL_TOL:.0e}); nothing was written")
        result["passed"] = True
        return result

    # -- Core ML -------------------------------------------------------------------------------
    def export_coreml(self, fused, reference: Reference, work: Path) -> None:
        spec, options, progress = self.spec, self.options, self.progress
        encoder_path, decoder_path = work / self.names["coreml_encoder"], work / self.names["coreml_decoder"]
        mean_255, std_255 = coreml_check.pixel_stats(spec)
        if options.image_input == "image":
            encoder_module = EncoderForExport(fused.image_encoder, pixel_std=std_255)
            encoder_inputs = [coreml_export.image_input(mean_255)]
        else:
            encoder_module = EncoderForExport(fused.image_encoder)
            encoder_inputs = [coreml_export.tensor_input("image", (1, 3, 1024, 1024))]
        with progress.step("Core ML encoder trace"):
            traced = coreml_export.trace(encoder_module, torch.zeros(1, 3, 1024, 1024))
        with progress.step("Core ML encoder conversion"):
            encoder = coreml_export.convert(traced, encoder_inputs, ["imageEmbeddings"], options.precision,
                                            options.min_target)
            del traced
        packed_shape = (coreml_export.enumerated(self.tokens, default=self.tokens[0]) if len(self.tokens) > 1
                        else (1, self.tokens[0], 3))
        decoder_inputs = [coreml_export.tensor_input("imageEmbeddings", (1, 256, 64, 64)),
                          coreml_export.tensor_input("points", packed_shape)]
        if spec.style == "sam":
            decoder_inputs += [coreml_export.tensor_input("maskInput", (1, 1, 256, 256)),
                               coreml_export.tensor_input("hasMaskInput", (1,))]
        with progress.step("Core ML decoder conversion"):
            traced = coreml_export.trace(decoder_module(fused, spec, packed=True),
                                         decoder_example(spec, self.tokens[0], True))
            decoder = coreml_export.convert(traced, decoder_inputs, ["lowResMasks", "iouScores"], options.precision,
                                            options.min_target)
        if options.compress != "none":
            with progress.step(f"Core ML {options.compress} compression"):
                encoder = coreml_export.compress(encoder, options.compress)
                decoder = coreml_export.compress(decoder, options.compress)
        self.describe_coreml(encoder, decoder)
        with progress.step("Core ML save"):
            encoder.save(str(encoder_path))
            decoder.save(str(decoder_path))
        self.record_file("coreml_encoder", encoder_path)
        self.record_file("coreml_decoder", decoder_path)
        with progress.step("Core ML package checks"):
            self.manifest["coreml"] = {
                "encoder": self.check_coreml_package(encoder_path, "encoder"),
                "decoder": self.check_coreml_package(decoder_path, "decoder"),
                "point_input": "packed: points (1, N, 3) = (x, y, label) per token, N one of the enumerated "
                               "token counts (EnumeratedShapes on one input; below iOS18 Core ML refuses them "
                               "on two inputs, and RangeDim models use the Neural Engine only at their default)",
                "image_input": options.image_input,
            }
        self.validate_coreml(encoder_path, decoder_path, reference)

    def describe_coreml(self, encoder, decoder) -> None:
        from .. import __version__

        spec, contract = self.spec, transforms.input_contract(self.spec.style)
        user = {"com.samexport.model": spec.name, "com.samexport.title": spec.title,
                "com.samexport.checkpoint": self.manifest["checkpoint"]["sha256"],
                "com.samexport.precision": self.options.precision,
                "com.samexport.compression": self.options.compress,
                "com.samexport.contract": json.dumps(contract)}
        if self.options.image_input == "image":
            image_text = (f"RGB 1024x1024. {contract['resize']}; padding: {contract['padding']} "
                          f"(RGB {contract['pad_color_rgb']}). Normalization is inside the model."
                          if spec.style == "sam" else
                          f"RGB 1024x1024. {contract['resize']}. Normalization is inside the model.")
        else:
            image_text = ("float32 (1, 3, 1024, 1024), already normalized with mean "
                          f"{contract['pixel_mean']} / std {contract['pixel_std']} ({contract['pixel_scale']} scale)")
        coreml_export.set_metadata(
            encoder, f"{spec.title} image encoder (samexport)", __version__,
            {"image": image_text}, {"imageEmbeddings": "float32 (1, 256, 64, 64) image embeddings for the decoder"},
            {**user, "com.samexport.part": "encoder",
             "com.samexport.letterbox_fill_rgb": json.dumps(contract["pad_color_rgb"])})
        inputs = {"imageEmbeddings": "float32 (1, 256, 64, 64) from the encoder",
                  "points": (f"float32 (1, N, 3): (x, y, label) per prompt token in the 1024 model frame, N in "
                             f"{self.tokens}. Labels: 1 positive, 0 negative, 2/3 box corners, -1 padding. "
                             f"Layout: {contract['prompt_layout']}")}
        if spec.style == "sam":
            inputs["maskInput"] = "float32 (1, 1, 256, 256) low-res logits of an earlier prediction, or zeros"
            inputs["hasMaskInput"] = "float32 (1,): 1 when maskInput holds a mask, else 0"
        coreml_export.set_metadata(
            decoder, f"{spec.title} prompt encoder + mask decoder (samexport)", __version__, inputs,
            {"lowResMasks": f"float32 (1, 4, 256, 256) mask logits of all 4 mask tokens; threshold 0.0 after "
                            f"upscaling: {contract['mask_upscaling']}",
             "iouScores": f"float32 (1, 4) predicted IoU per mask token; {contract['multimask_selection']}"},
            {**user, "com.samexport.part": "decoder", "com.samexport.token_counts": json.dumps(self.tokens)})

    def check_coreml_package(self, package: Path, part: str) -> Dict:
        """Structural checks that need no Core ML runtime; fails the run if any does not hold."""
        io = coreml_export.describe_io(package)
        census = coreml_export.op_census(package)
        spec = coreml_export.load_spec(package)
        checks: Dict[str, bool] = {}
        inputs = {f["name"]: f for f in io["inputs"]}
        outputs = {f["name"]: f for f in io["outputs"]}
        if part == "encoder":
            image = inputs.get("image", {})
            checks["image input"] = (image.get("kind") == "image" and image.get("width") == 1024
                                     if self.options.image_input == "image"
                                     else image.get("shape") == [1, 3, 1024, 1024])
            checks["embeddings output float32 (1,256,64,64)"] = outputs.get("imageEmbeddings", {}).get("dtype") == "float32"
            checks["no batch_norm op"] = "batch_norm" not in census
        else:
            points = inputs.get("points", {})
            shapes = sorted(s[1] for s in points.get("enumerated_shapes", [])) or [points.get("shape", [0, 0])[1]]
            checks[f"points accept exactly {self.tokens} tokens"] = shapes == self.tokens
            checks["no range-flexible input"] = not any(f.get("range_flexible") for f in io["inputs"])
            expected = {"imageEmbeddings", "points"} | ({"maskInput", "hasMaskInput"} if self.spec.style == "sam"
                                                        else set())
            checks["decoder inputs"] = set(inputs) == expected
            checks["decoder outputs"] = set(outputs) == {"lowResMasks", "iouScores"}
        meta = spec.description.metadata
        checks["metadata complete"] = bool(meta.author and meta.license and meta.versionString
                                           and meta.shortDescription
                                           and "com.samexport.contract" in meta.userDefined)
        checks["all features described"] = all(f.shortDescription for f in
                                                list(spec.description.input) + list(spec.description.output))
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            fail(f"Core ML {part} package check failed: {', '.join(failed)}; nothing was written")
        return {"io": io, "op_census": census, "ops_total": sum(census.values()), "checks": checks}

    def validate_coreml(self, encoder_path: Path, decoder_path: Path, reference: Reference) -> None:
        if not self.options.validate:
            self.manifest["validation"]["coreml"] = {"skipped": "--no-validate"}
            return
        method = coreml_check.resolve_method("auto")
        how = "Core ML prediction" if method == "coreml" else "NumPy evaluation of the saved program"
        floor = coreml_check.floor_for(self.options.precision, self.options.compress, method)
        with self.progress.step(f"Core ML encoder check ({how} vs PyTorch)"):
            case = coreml_check.encoder_case(self.model, self.spec, reference.image,
                                             self.options.image_input == "image")
            encoder = coreml_check.check_encoder(encoder_path, case, method, floor)
        self.manifest["validation"]["coreml"] = {"encoder": encoder}
        coreml_check.raise_if_failed("encoder", encoder, "; nothing was written")
        with self.progress.step(f"Core ML decoder check ({how} vs PyTorch, {len(self.tokens)} token counts)"):
            cases = coreml_check.decoder_cases(self.model, self.spec, reference.embeddings, reference.prompts,
                                               self.tokens)
            decoder = coreml_check.check_decoder(decoder_path, cases, method, floor)
        self.manifest["validation"]["coreml"]["decoder"] = decoder
        coreml_check.raise_if_failed("decoder", decoder, "; nothing was written")
        self.manifest["validation"]["coreml"]["passed"] = True


def convert(options: ConvertOptions, quiet: bool = False) -> Dict:
    converter = Converter(options, Progress(quiet=quiet))
    return converter.run()
