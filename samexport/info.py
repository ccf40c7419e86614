"""Static facts about a registry model: parameter counts, GMACs, sizes, shapes, input contract.

Everything is computed on the meta device (shapes only, no weights, no arithmetic). Parameter
counts alone (`model_params`, for `samexport list`) skip the FLOP counting.
"""

from __future__ import annotations

from typing import Dict

import torch
from torch.utils.flop_counter import FlopCounterMode

from .registry import get_spec
from .transforms import IMG_SIZE


def _gmacs(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 2e9


def _param_counts(model) -> Dict[str, int]:
    encoder = sum(p.numel() for p in model.image_encoder.parameters())
    decoder = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("image_encoder."))
    return {"encoder": encoder, "decoder": decoder, "total": encoder + decoder}


def model_params(name: str) -> Dict[str, int]:
    """Encoder, decoder and total parameter counts."""
    return _param_counts(get_spec(name).build_meta())


def model_info(name: str) -> Dict:
    spec = get_spec(name)
    family = spec.family
    model = spec.build_meta().eval()
    with torch.device("meta"):
        params = _param_counts(model)
        image = torch.empty(1, 3, IMG_SIZE, IMG_SIZE)
        embeddings = torch.empty(1, 256, 64, 64)
        tokens = family.click_tokens(1)
        coords, labels = torch.empty(1, tokens, 2), torch.zeros(1, tokens, dtype=torch.int64)

        def run_decoder():
            return model.decode_tensors(embeddings, coords, labels)

        encoder_gmacs = _gmacs(lambda: model.image_encoder(image))
        decoder_gmacs = _gmacs(run_decoder)
        out_shape = tuple(model.image_encoder(image).shape)
        masks, iou = run_decoder()
    return {
        "name": spec.name,
        "title": spec.title,
        "family": family.name,
        "summary": spec.summary,
        "swift_name": spec.swift_name,
        "params": params,
        "gmacs": {
            "encoder_1024": round(encoder_gmacs, 2),
            f"decoder_{tokens}_tokens": round(decoder_gmacs, 3),
        },
        "fp16_mb": {
            "encoder": round(params["encoder"] * 2 / 1e6, 1),
            "decoder": round(params["decoder"] * 2 / 1e6, 1),
        },
        "shapes": {
            "image": [1, 3, IMG_SIZE, IMG_SIZE],
            "image_embeddings": list(out_shape),
            "low_res_masks": list(masks.shape),
            "iou_predictions": list(iou.shape),
        },
        "checkpoint": {"file": spec.checkpoint_file, "source": spec.checkpoint_source},
        "input_contract": family.input_contract(),
    }
