"""Predictors over exported files: onnxruntime (any platform) and Core ML (macOS on Apple silicon).

Both take an export manifest written by `samexport convert`, so the family, its preprocessing and the
decoder's batch sizes come from what was exported, not from guesses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import torch

from ..errors import UsageError
from ..predictor import Predictor
from ..registry import get_spec
from . import coreml_export, onnx_export


def read_manifest(path: Path) -> Dict:
    try:
        manifest = json.loads(Path(path).read_text())
        manifest["files"], manifest["model"]["name"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
        raise UsageError(
            f"{path} is not a readable samexport export manifest ({e}); run samexport convert"
        ) from None
    return manifest


def _file(manifest_path: Path, manifest: Dict, key: str) -> Path:
    entry = manifest["files"].get(key)
    path = Path(manifest_path).parent / str((entry or {}).get("path", ""))
    if not entry or not path.exists():
        raise UsageError(f"{manifest_path} lists no existing {key} file; run samexport convert again")
    return path


class OnnxPredictor(Predictor):
    """The exported ONNX encoder and decoder on onnxruntime's CPU provider; any number of prompt sets."""

    name = "onnx"

    def __init__(self, manifest_path: Path) -> None:
        manifest = read_manifest(manifest_path)
        spec = get_spec(manifest["model"]["name"])
        super().__init__(spec.family)
        self.signature = spec.family.decoder_signature(manifest["decoder_prompt"]["token_counts"])
        self.encoder = onnx_export.session(_file(manifest_path, manifest, "onnx_encoder"))
        self.decoder = onnx_export.session(_file(manifest_path, manifest, "onnx_decoder"))

    def encode(self, image: np.ndarray) -> torch.Tensor:
        tensor = self.family.preprocess(image).numpy()
        return torch.from_numpy(self.encoder.run(None, {"image": tensor})[0])

    def decode(
        self, embeddings: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        feeds = self.signature.feeds(embeddings.numpy(), coords, labels, None, packed=False)
        masks, iou = self.decoder.run(None, feeds)
        return torch.from_numpy(masks), torch.from_numpy(iou)


class CoreMLPredictor(Predictor):
    """The exported Core ML packages; B from the decoder's enumerated batch sizes.

    `method` "coreml" runs Core ML (macOS on Apple silicon, each package compiled once); "numpy" evaluates
    the saved ML programs with samexport.mileval on any platform (slow, for checking what a Mac will do).
    """

    name = "coreml"

    def __init__(self, manifest_path: Path, compute_units: str = "ALL", method: str = "coreml") -> None:
        from ..coreml_package import CoreMLPackage
        from .coreml_check import CoreMLRunner, NumpyRunner

        if method == "coreml":
            coreml_export.require_prediction()
        manifest = read_manifest(manifest_path)
        spec = get_spec(manifest["model"]["name"])
        super().__init__(spec.family)
        encoder = CoreMLPackage(_file(manifest_path, manifest, "coreml_encoder"))
        decoder = CoreMLPackage(_file(manifest_path, manifest, "coreml_decoder"))
        self.signature = spec.family.decoder_signature(
            json.loads(decoder.metadata["com.samexport.token_counts"]),
            json.loads(decoder.metadata.get("com.samexport.batch_sizes", "[1]")),
        )
        self.batch_sizes = self.signature.batch_sizes
        self.image_input = any(f["kind"] == "image" for f in encoder.io["inputs"])
        if method == "coreml":
            self.encoder, self.decoder = (
                CoreMLRunner(encoder, compute_units),
                CoreMLRunner(decoder, compute_units),
            )
        else:
            self.encoder, self.decoder = NumpyRunner(encoder, False), NumpyRunner(decoder, False)
            self.name = "coreml (NumPy evaluation)"
            self.slowness = (
                "the NumPy evaluator decodes about 7x slower than onnxruntime (18.0 s vs 2.4 s per 64 "
                "prompts, MobileSAM on 2 cores: benchmarks/results/linux-x86_64-2core/"
                "decode_backends_tinyvit.json); --backend onnx is the faster way to see everything mode here"
            )

    def encode(self, image: np.ndarray) -> torch.Tensor:
        if self.image_input:  # 0..255 pixels of the app's canvas; the runner hands Core ML an image
            feed = self.family.app_canvas(image).transpose(2, 0, 1)[None].astype(np.float32)
        else:
            feed = self.family.preprocess(image).numpy()
        outputs, _ = self.encoder.run({"image": feed})
        return torch.from_numpy(np.asarray(outputs["imageEmbeddings"], dtype=np.float32))

    def decode(
        self, embeddings: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        feeds = self.signature.feeds(embeddings.numpy(), coords, labels, None, packed=True)
        outputs, _ = self.decoder.run(feeds)
        return (
            torch.from_numpy(np.asarray(outputs["lowResMasks"], dtype=np.float32)),
            torch.from_numpy(np.asarray(outputs["iouScores"], dtype=np.float32)),
        )
