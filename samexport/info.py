"""Static facts about a registry model: parameter counts, GMACs, sizes, shapes, input contract.

Everything is computed on the meta device (shapes only, no weights, no arithmetic), so it takes
well under a second even for SAM ViT-H.
"""

from __future__ import annotations

from typing import Dict

import torch
from torch.utils.flop_counter import FlopCounterMode

from .registry import get_spec
from .transforms import EFFICIENT_SAM_MAX_POINTS, IMG_SIZE, input_contract


def _gmacs(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 2e9


def example_prompt_tokens(style: str) -> int:
    """Token count of one click: SAM adds a padding token, EfficientSAM always uses 6."""
    return 2 if style == "sam" else EFFICIENT_SAM_MAX_POINTS


def model_info(name: str) -> Dict:
    spec = get_spec(name)
    with torch.device("meta"):
        model = spec.build().eval()
        encoder_params = sum(p.numel() for p in model.image_encoder.parameters())
        decoder_params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("image_encoder."))
        image = torch.empty(1, 3, IMG_SIZE, IMG_SIZE)
        embeddings = torch.empty(1, 256, 64, 64)
        tokens = example_prompt_tokens(spec.style)
        coords, labels = torch.empty(1, tokens, 2), torch.zeros(1, tokens, dtype=torch.int64)

        def run_decoder():
            sparse = model.prompt_encoder.embed_points(coords, labels)
            dense = model.prompt_encoder.no_mask_dense(1) if spec.style == "sam" else None
            return model.mask_decoder.predict_masks(embeddings, model.prompt_encoder.get_dense_pe(), sparse, dense)

        encoder_gmacs = _gmacs(lambda: model.image_encoder(image))
        decoder_gmacs = _gmacs(run_decoder)
        out_shape = tuple(model.image_encoder(image).shape)
        masks, iou = run_decoder()
    return {
        "name": spec.name,
        "title": spec.title,
        "summary": spec.summary,
        "swift_name": spec.swift_name,
        "params": {"encoder": encoder_params, "decoder": decoder_params, "total": encoder_params + decoder_params},
        "gmacs": {"encoder_1024": round(encoder_gmacs, 2), f"decoder_{tokens}_tokens": round(decoder_gmacs, 3)},
        "fp16_mb": {"encoder": round(encoder_params * 2 / 1e6, 1), "decoder": round(decoder_params * 2 / 1e6, 1)},
        "shapes": {"image": [1, 3, IMG_SIZE, IMG_SIZE], "image_embeddings": list(out_shape),
                   "low_res_masks": list(masks.shape), "iou_predictions": list(iou.shape)},
        "checkpoint": {"file": spec.checkpoint_file, "source": spec.checkpoint_source},
        "input_contract": input_contract(spec.style),
    }
