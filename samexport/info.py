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


FP16_MB_COVERS = (
    "the weights an fp16 package stores, 2 bytes per value of the exported modules' parameters and "
    "buffers (the decoder's dense positional encoding included); a package adds its program and "
    "constants the converter precomputes (attention biases, position embeddings): measured, the "
    "decoders come within 2%, the encoders up to 15% above"
)


def exported_weights_mb(model) -> Dict:
    """fp16 megabytes of what the export modules hold (see FP16_MB_COVERS), on the meta device."""
    from .families import EncoderForExport

    with torch.device("meta"):
        parts = {
            "encoder": EncoderForExport(model.image_encoder),
            "decoder": model.spec.family.decoder_for_export(model, packed=True),
        }
    sizes = {
        part: sum(v.numel() for v in module.state_dict().values() if v.is_floating_point()) * 2 / 1e6
        for part, module in parts.items()
    }
    return {part: round(mb, 1) for part, mb in sizes.items()} | {"covers": FP16_MB_COVERS}


def model_info(name: str) -> Dict:
    spec = get_spec(name)
    family = spec.family
    model = spec.build_meta().eval()
    model.spec = spec
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
        "fp16_mb": exported_weights_mb(model),
        "shapes": {
            "image": [1, 3, IMG_SIZE, IMG_SIZE],
            "image_embeddings": list(out_shape),
            "low_res_masks": list(masks.shape),
            "iou_predictions": list(iou.shape),
        },
        "checkpoint": {"file": spec.checkpoint_file, "source": spec.checkpoint_source},
        "input_contract": family.input_contract(),
    }
