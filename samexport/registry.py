"""The model zoo: one named config per supported model, as in timm's registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Tuple

from torch import nn

from .errors import UsageError
from .modeling import EfficientSam, EfficientSamImageEncoder, ImageEncoderViT, RepViT, Sam, TinyViT


@dataclass(frozen=True)
class ModelSpec:
    name: str
    title: str
    swift_name: str              # base of exported file and Swift class names
    style: str                   # "sam" or "efficientsam": prompt/decoder conventions
    build_encoder: Callable[[], nn.Module]
    checkpoint_file: str         # official file name
    checkpoint_source: str
    summary: str
    parity_family: str | None = None   # fixture name in shared/parity
    aliases: Tuple[str, ...] = field(default_factory=tuple)

    def build(self) -> nn.Module:
        model_cls = Sam if self.style == "sam" else EfficientSam
        return model_cls(self.build_encoder())


def _sam_vit(embed_dim: int, depth: int, heads: int, global_idx: Tuple[int, ...]) -> Callable[[], nn.Module]:
    return lambda: ImageEncoderViT(embed_dim, depth, heads, global_idx)


_SPECS: List[ModelSpec] = [
    ModelSpec("repvit", "RepViT-SAM", "RepViTSAM", "sam", RepViT, "repvit_sam.pt",
              "THU-MIG/RepViT releases (RepViT-SAM)",
              "RepViT-M2.3 CNN encoder, stride-1 last downsample, SAM decoder", "repvit_sam"),
    ModelSpec("tinyvit", "MobileSAM", "MobileSAM", "sam", TinyViT, "mobile_sam.pt",
              "ChaoningZhang/MobileSAM, weights/mobile_sam.pt",
              "TinyViT-5M encoder distilled from SAM ViT-H, SAM decoder", "mobile_sam", ("mobilesam",)),
    ModelSpec("efficientsam_ti", "EfficientSAM-Ti", "EfficientSAMTi", "efficientsam",
              lambda: EfficientSamImageEncoder(192, 12, 3), "efficient_sam_vitt.pt",
              "yformer/EfficientSAM, weights/efficient_sam_vitt.pt",
              "ViT-Ti encoder (SAMI-pretrained), EfficientSAM prompt encoder and decoder", "efficient_sam_vitt"),
    ModelSpec("efficientsam_s", "EfficientSAM-S", "EfficientSAMS", "efficientsam",
              lambda: EfficientSamImageEncoder(384, 12, 6), "efficient_sam_vits.pt",
              "yformer/EfficientSAM, weights/efficient_sam_vits.pt.zip (unzip it)",
              "ViT-S encoder (SAMI-pretrained), EfficientSAM prompt encoder and decoder", "efficient_sam_vits"),
    ModelSpec("sam_vit_b", "SAM ViT-B", "SAMViTB", "sam", _sam_vit(768, 12, 12, (2, 5, 8, 11)),
              "sam_vit_b_01ec64.pth", "facebookresearch/segment-anything model checkpoints",
              "original SAM, ViT-B encoder (heavy baseline)", "sam_vit_b"),
    ModelSpec("sam_vit_l", "SAM ViT-L", "SAMViTL", "sam", _sam_vit(1024, 24, 16, (5, 11, 17, 23)),
              "sam_vit_l_0b3195.pth", "facebookresearch/segment-anything model checkpoints",
              "original SAM, ViT-L encoder"),
    ModelSpec("sam_vit_h", "SAM ViT-H", "SAMViTH", "sam", _sam_vit(1280, 32, 16, (7, 15, 23, 31)),
              "sam_vit_h_4b8939.pth", "facebookresearch/segment-anything model checkpoints",
              "original SAM, ViT-H encoder (the teacher of MobileSAM)"),
]

_BY_NAME: Dict[str, ModelSpec] = {}
for _spec in _SPECS:
    for _key in (_spec.name, *_spec.aliases):
        _BY_NAME[_key] = _spec


def list_models() -> List[str]:
    """Registry names, in table order (aliases excluded)."""
    return [s.name for s in _SPECS]


def get_spec(name: str) -> ModelSpec:
    try:
        return _BY_NAME[name.lower()]
    except (KeyError, AttributeError):
        raise UsageError(f"unknown model {name!r}; choose one of: {', '.join(list_models())} "
                         f"(alias: mobilesam)") from None
