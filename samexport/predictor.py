"""One image encoder and one prompt decoder behind one interface, whatever runs them.

`Predictor` holds an image's embedding and decodes batches of prompt sets against it, timing both;
`TorchPredictor` runs a model of the zoo. The exported runtimes (onnxruntime, Core ML) live in
`samexport.export.runtimes` and share this interface, so the everything mode and `samexport segment`
run the same code on every backend.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import defaultdict
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .families import Family
from .modeling.transforms import check_image


def batch_plan(count: int, batch_sizes: Sequence[int]) -> List[Tuple[int, int, int]]:
    """(start, count, padded) per decoder call: `count` prompt sets in calls of at most the largest
    batch size, each padded to the smallest batch size that holds it."""
    sizes = sorted(batch_sizes)
    plan = []
    for start in range(0, count, sizes[-1]):
        n = min(sizes[-1], count - start)
        plan.append((start, n, next(b for b in sizes if b >= n)))
    return plan


class Predictor(ABC):
    """Encode once, decode many: `set_image`, then `predict` in the 1024 model frame.

    `batch_sizes`: the prompt-set counts the decoder accepts (None: any). Larger batches are split;
    a smaller remainder is padded by repeating its last prompt set and the padding is dropped.
    """

    name: str
    batch_sizes: Optional[Tuple[int, ...]] = None
    # why this predictor is far slower than another one available here (said before long runs), if it is
    slowness: Optional[str] = None

    def __init__(self, family: Family) -> None:
        self.family = family
        self.embeddings: Optional[torch.Tensor] = None
        self.original_size: Optional[Tuple[int, int]] = None
        self.timings: Dict[str, float] = defaultdict(float)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage] += time.perf_counter() - start

    def set_image(self, image: np.ndarray) -> None:
        """HxWx3 uint8 RGB: computes and keeps its (1, 256, 64, 64) embedding."""
        image = check_image(image)
        with self.timed("encoder"):
            self.embeddings = self.encode(image)
        self.original_size = image.shape[:2]

    def predict(self, coords: torch.Tensor, labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """coords (B, T, 2) in the model frame, labels (B, T) -> low-res logits (B, 4, 256, 256) and
        IoU (B, 4) for the image of the last `set_image`."""
        if self.embeddings is None:
            raise RuntimeError("call set_image before predict")
        with self.timed("decoder"):
            if self.batch_sizes is None:
                return self.decode(self.embeddings, coords, labels)
            parts = []
            for start, count, padded in batch_plan(len(coords), self.batch_sizes):
                chunk, last = slice(start, start + count), slice(start + count - 1, start + count)
                extra = padded - count
                masks, iou = self.decode(
                    self.embeddings,
                    torch.cat([coords[chunk], coords[last].expand(extra, -1, -1)]),
                    torch.cat([labels[chunk], labels[last].expand(extra, -1)]),
                )
                parts.append((masks[:count], iou[:count]))
            return torch.cat([m for m, _ in parts]), torch.cat([s for _, s in parts])

    @abstractmethod
    def encode(self, image: np.ndarray) -> torch.Tensor:
        """HxWx3 uint8 RGB -> (1, 256, 64, 64) float32."""

    @abstractmethod
    def decode(
        self, embeddings: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(1, 256, 64, 64), (B, T, 2), (B, T) -> (B, 4, 256, 256), (B, 4) float32."""


class TorchPredictor(Predictor):
    """A zoo model (`samexport.build_model`) in PyTorch."""

    name = "torch"

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__(model.spec.family)
        self.model = model

    @torch.no_grad()
    def encode(self, image: np.ndarray) -> torch.Tensor:
        return self.model.image_encoder(self.family.preprocess(image))

    @torch.no_grad()
    def decode(
        self, embeddings: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.model.decode_tensors(embeddings, coords.float(), labels.long())
