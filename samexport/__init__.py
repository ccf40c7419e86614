"""samexport: Segment Anything models, reparameterized and exported to Core ML, ONNX, Core AI and LiteRT.

    import samexport
    m = samexport.build_model("repvit", checkpoint="models/repvit_sam.pt")
    emb = m.image_encoder(m.preprocess(image))
    low_res_masks, iou = m.decode(emb, coords, labels)
    fused = samexport.reparameterize_model(m)
    records = samexport.MaskGenerator(m).generate(image)   # everything mode
    session = samexport.open_session("models/RepViTSAM.export.json", "onnx")   # any export, a runner per part
    tracker = samexport.build_video_predictor("edgetam", backend="onnx", manifest="EdgeTAM.export.json")

The names below are imported on first use, so `import samexport` (and `samexport --help`) does
not load torch.
"""

from __future__ import annotations

import importlib

from .errors import SamExportError
from .version import __version__

_LAZY = {
    "MaskGenerator": "samexport.mask_generator",
    "RandomWeightsWarning": "samexport.zoo",
    "build_model": "samexport.zoo",
    "build_video_predictor": "samexport.video_predictor",
    "get_spec": "samexport.families.registry",
    "list_models": "samexport.families.registry",
    "open_session": "samexport.export.runtimes",
    "torch_session": "samexport.zoo",
    "reparameterize_model": "samexport.reparam",
}

__all__ = ["SamExportError", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'samexport' has no attribute {name!r}")
