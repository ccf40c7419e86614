"""One image encoder and one prompt decoder behind one interface, whatever runs them.

`Predictor` holds an image's embedding and decodes batches of prompt sets against it, timing both;
`SessionPredictor` runs a session's encoder and decoder, whatever backend the session's runners are:
`TorchPredictor` is a zoo model's own session, `samexport.export.runtimes.ExportPredictor` an export's. The
everything mode and `samexport segment` run the same code on every backend.
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


class SessionPredictor(Predictor):
    """The encoder and decoder of a session (`runtime.Session`: PyTorch's modules or any export's files, a
    runner each): one implementation of encode-once, decode-many for every backend. B is any number for a
    session whose decoder takes any (PyTorch, dynamic targets), else its exported prompt-set counts."""

    def __init__(self, session, name: Optional[str] = None) -> None:
        from .families.registry import get_spec

        session.require("encoder", "decoder")
        family = get_spec(session.model).family
        super().__init__(family)
        self.session = session
        shapes = session.shapes or family.session_shapes()
        self.interfaces = session.interfaces
        self.packed = session.form.packed_prompts
        self.image_input = session.form.image_input
        self.signature = family.decoder_signature(shapes.token_counts, shapes.batch_sizes)
        self.batch_sizes = None if session.form.dynamic else self.signature.batch_sizes
        self.encoder, self.decoder = session.runners["encoder"], session.runners["decoder"]
        self.name = name or session.backend

    def encode(self, image: np.ndarray) -> torch.Tensor:
        encoder = self.interfaces["encoder"]
        if self.image_input:  # 0..255 pixels of the app's canvas; the runner hands them over as an image
            feed = self.family.app_canvas(image).transpose(2, 0, 1)[None].astype(np.float32)
        else:
            feed = self.family.preprocess(image).numpy()
        outputs, _ = self.encoder.run({encoder.input_names[0]: feed})
        return torch.from_numpy(np.asarray(outputs[encoder.output_names[0]], dtype=np.float32))

    def decode(
        self, embeddings: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        feeds = self.signature.feeds(embeddings.numpy(), coords, labels, None, packed=self.packed)
        outputs, _ = self.decoder.run(feeds)
        masks, iou = self.interfaces["decoder"].output_names
        return (
            torch.from_numpy(np.asarray(outputs[masks], dtype=np.float32)),
            torch.from_numpy(np.asarray(outputs[iou], dtype=np.float32)),
        )


class TorchPredictor(SessionPredictor):
    """A zoo model (`samexport.build_model`) in PyTorch: the session of its own modules."""

    def __init__(self, model: torch.nn.Module) -> None:
        from .zoo import model_session

        super().__init__(model_session(model), name="torch")
        self.model = model
