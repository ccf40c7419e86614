"""Feeds for int8 activation calibration: the encoder and decoder inputs the app would give, made
from generated scenes (`samples.calibration_images`, never the validation image) by PyTorch."""

from __future__ import annotations

from typing import Dict, List

import numpy as np
import torch

from ..families import DecoderSignature
from .coreml_check import decoder_cases, encoder_case
from .reference import scene_prompts
from .samples import CALIBRATION_SIZES, calibration_images


def encoder_feeds(model, image_input: bool) -> List[Dict[str, np.ndarray]]:
    """One encoder feed per calibration scene, as the package takes it (pixels or the official tensor)."""
    return [{"image": encoder_case(model, image, image_input).feed} for image in calibration_images()]


def decoder_feeds(model, signature: DecoderSignature) -> List[Dict[str, np.ndarray]]:
    """Per calibration scene: the validation prompts placed on it (a mask prompt included where the
    family takes one) and seeded clicks for every token count and batch size the decoder takes, against
    PyTorch's embeddings of the scene."""
    feeds = []
    for image in calibration_images():
        with torch.no_grad():
            embeddings = model.image_encoder(model.preprocess(image))
        prompts = scene_prompts(model, image, embeddings)
        cases = decoder_cases(model, embeddings, prompts, list(signature.token_counts), signature.batch_sizes)
        feeds += [case.feeds for case in cases]
    return feeds


def describe(samples: Dict[str, List[Dict[str, np.ndarray]]]) -> Dict:
    return {
        "method": "min/max of every value while samexport.mileval evaluated the uncompressed program",
        "images": [f"generated scene {h}x{w}" for h, w in CALIBRATION_SIZES],
        "feeds": {part: len(feeds) for part, feeds in samples.items()},
        "mode": "linear_symmetric int8 (coremltools quantize/dequantize pairs)",
    }
