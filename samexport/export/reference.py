"""The PyTorch reference every export is checked against: the official (unfused) model's outputs
on the validation image and prompts. Used by `convert` and `validate`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from .samples import validation_image, validation_prompts

Prompt = Tuple[str, torch.Tensor, torch.Tensor, Optional[torch.Tensor]]  # name, coords, labels, mask


@dataclass
class Reference:
    """PyTorch outputs of the official (unfused) model on the validation inputs."""

    image: np.ndarray
    tensor: torch.Tensor
    embeddings: torch.Tensor
    prompts: List[Prompt]
    outputs: Dict[str, Tuple[np.ndarray, np.ndarray]]


def make_reference(model) -> Reference:
    """The validation image encoded, each validation prompt decoded, plus (for families with a mask
    prompt) the first prompt again with its own best mask as the mask prompt."""
    image = validation_image()
    tensor = model.preprocess(image)
    with torch.no_grad():
        embeddings = model.image_encoder(tensor)
    prompts = scene_prompts(model, image, embeddings)
    outputs = {}
    for name, coords, labels, mask in prompts:
        masks, iou = model.decode(embeddings, coords, labels, mask_input=mask)
        outputs[name] = (masks.numpy(), iou.numpy())
    return Reference(image, tensor, embeddings, prompts, outputs)


def scene_prompts(model, image: np.ndarray, embeddings: torch.Tensor) -> List[Prompt]:
    """The validation prompts placed on `image`, plus (for families with a mask prompt) the first again
    with its own best mask as the mask prompt."""
    hw = image.shape[:2]
    prompts: List[Prompt] = []
    for name, kwargs in validation_prompts(*hw):
        coords, labels = model.prompt_tokens(hw, **kwargs)
        prompts.append((name, coords, labels, None))
    if model.spec.family.mask_prompt:
        with torch.no_grad():
            first_masks, _ = model.decode(embeddings, prompts[0][1], prompts[0][2])
        prompts.append(("click + mask prompt", prompts[0][1], prompts[0][2], first_masks[:, 1:2]))
    return prompts


BATCH_SEED = 1


def prompt_batch(model, embeddings: torch.Tensor, tokens: int, batch: int) -> Prompt:
    """`batch` prompt sets of `tokens` tokens each (seeded positive clicks, padded as the family pads a
    clicks-only prompt), for checking a decoder that takes several prompt sets per call."""
    family = model.spec.family
    clicks = family.clicks_filling(tokens)
    rng = np.random.default_rng(BATCH_SEED)
    coords = np.zeros((batch, tokens, 2), dtype=np.float32)
    coords[:, :clicks] = rng.uniform(0, 1024, (batch, clicks, 2))
    labels = np.full((batch, tokens), -1.0, dtype=np.float32)
    labels[:, :clicks] = 1.0
    return (
        f"{batch} prompt sets of {clicks} clicks",
        torch.from_numpy(coords),
        torch.from_numpy(labels),
        None,
    )
