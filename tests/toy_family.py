"""A toy third family for tests: SAM's prompt encoder and decoder with a fixed 3-token prompt (clicks
and box corners padded with (0, 0)/-1 or cut to 3), no mask prompt, and a one-convolution encoder.

It exercises the same code every real family goes through (registry, convert, both targets, bench
rows) in seconds, which makes it the model of the fast tests of convert's file handling.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from samexport.errors import InputError
from samexport.families import DecoderForExport, register_family, unregister_family
from samexport.families.registry import ModelSpec, register_model, unregister_model
from samexport.families.sam import SamFamily
from samexport.modeling.prompt_rules import FixedTokensRule, PaddingTokenRule
from samexport.modeling.sam import Sam

TOKENS = 3


# -- the model module ----------------------------------------------------------------------------------
class PatchEncoder(nn.Module):
    """(1, 3, 1024, 1024) -> (1, 256, 64, 64) in one 16x16 stride-16 convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, 256, 16, stride=16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class ThreeTokenRule(PaddingTokenRule):
    """SAM's token layout, then padded with (0, 0)/-1 or cut to exactly 3 tokens."""

    def __init__(self) -> None:
        self.fixed = FixedTokensRule(TOKENS, 0.0)

    def tokens(self, coords, labels, box):
        return self.fixed.padded(*super().tokens(coords, labels, box))

    def padded(self, coords, labels):
        return self.fixed.padded(coords, labels)

    def token_counts(self, points):
        return [TOKENS]

    def click_tokens(self, clicks):
        return TOKENS

    def clicks_filling(self, tokens):
        return tokens


class ThreeTokenSam(Sam):
    """SAM with every prompt padded or cut to exactly 3 tokens and no mask prompt."""

    prompt_rule = ThreeTokenRule()

    @torch.no_grad()
    def decode(self, image_embeddings, coords, labels, mask_input=None):
        if mask_input is not None:
            raise InputError("this family has no mask prompt")
        return self.decode_tensors(*self._prompt_inputs(image_embeddings, coords, labels))

    def decode_tensors(self, emb, coords, labels, mask=None):
        return super().decode_tensors(emb, *self.prompt_rule.padded(coords, labels))


# -- the family module ---------------------------------------------------------------------------------
class ThreeTokenDecoderForExport(DecoderForExport):
    def forward(self, image_embeddings, *prompt):
        sparse, _ = self.sparse_and_rest(prompt)
        dense = self.prompt_encoder.no_mask_dense(image_embeddings.shape[0])
        return self.mask_decoder.predict_masks(image_embeddings, self.dense_pe, sparse, dense)


class ThreeTokenFamily(SamFamily):
    name = "threetoken"
    decoder_title = "three-token decoder"
    model_class = ThreeTokenSam
    decoder_class = ThreeTokenDecoderForExport
    mask_prompt = False
    onnx_dynamic_tokens = False

    def input_contract(self):
        return {
            **super().input_contract(),
            "family": self.name,
            "prompt_layout": f"SAM's layout padded with (0, 0)/-1 or cut to {TOKENS} tokens",
            "mask_prompt": None,
        }


@contextmanager
def toy_registered():
    """The toy family and its model `toy3` (files ToyThree*), registered for the duration."""
    family = register_family(ThreeTokenFamily())
    spec = register_model(
        ModelSpec(
            name="toy3",
            title="Toy three-token SAM",
            artifact_stem="ToyThree",
            family=family,
            encoder=PatchEncoder,
            checkpoint_file="toy3.pt",
            checkpoint_source="tests",
            summary="one conv encoder, SAM decoder, 3 tokens",
        )
    )
    try:
        yield spec
    finally:
        unregister_model("toy3")
        unregister_family("threetoken")


@contextmanager
def toy_exported(folder, target: str, **options):
    """The toy family registered and exported to `target` in `folder` with two token counts (1 and 5
    clicks: the toy's 3 tokens both) and two prompt-set counts (1, 4), and `options`: (folder, manifest)."""
    from samexport.export.convert import convert
    from samexport.export.options import ConvertOptions

    with toy_registered():
        chosen = ConvertOptions(
            encoder="toy3", target=target, output_dir=folder, points=(1, 5), batch=(1, 4), **options
        )
        yield folder, convert(chosen, quiet=True)
