"""A third family needs only its family module, its model module and one registry line.

The family here is a toy: SAM's prompt encoder and decoder with a fixed 3-token prompt (clicks and
box corners padded with (0, 0)/-1 or cut to 3), no mask prompt, and a one-convolution encoder. It
is registered, built, converted to ONNX and checked by the same code every real family goes through.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from samexport.errors import InputError
from samexport.families import DecoderForExport, register_family, unregister_family
from samexport.families.sam import SamFamily
from samexport.modeling.sam import Sam
from samexport.registry import ModelSpec, register_model, unregister_model

TOKENS = 3


# -- the model module ----------------------------------------------------------------------------------
class PatchEncoder(nn.Module):
    """(1, 3, 1024, 1024) -> (1, 256, 64, 64) in one 16x16 stride-16 convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, 256, 16, stride=16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class ThreeTokenSam(Sam):
    """SAM with every prompt padded or cut to exactly 3 tokens and no mask prompt."""

    @staticmethod
    def pad(coords: torch.Tensor, labels: torch.Tensor):
        coords, labels = coords[:, :TOKENS], labels[:, :TOKENS]
        missing = TOKENS - coords.shape[1]
        coords = torch.cat([coords, coords.new_zeros(coords.shape[0], missing, 2)], 1)
        labels = torch.cat([labels, labels.new_full((labels.shape[0], missing), -1)], 1)
        return coords, labels

    def prompt_tokens(self, original_hw, points=None, labels=None, box=None):
        return self.pad(*super().prompt_tokens(original_hw, points, labels, box))

    @torch.no_grad()
    def decode(self, image_embeddings, coords, labels, mask_input=None):
        if mask_input is not None:
            raise InputError("this family has no mask prompt")
        return self.decode_tensors(*self._prompt_inputs(image_embeddings, coords, labels))

    def decode_tensors(self, emb, coords, labels, mask=None):
        return super().decode_tensors(emb, *self.pad(coords, labels))


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

    def token_counts(self, points):
        return [TOKENS]

    def click_tokens(self, clicks):
        return TOKENS

    def clicks_filling(self, tokens):
        return tokens

    def input_contract(self):
        return {
            **super().input_contract(),
            "family": self.name,
            "prompt_layout": f"SAM's layout padded with (0, 0)/-1 or cut to {TOKENS} tokens",
            "mask_prompt": None,
        }


@pytest.fixture
def toy_model():
    family = register_family(ThreeTokenFamily())
    spec = register_model(
        ModelSpec(
            name="toy3",
            title="Toy three-token SAM",
            swift_name="ToyThree",
            family=family,
            encoder=PatchEncoder,
            checkpoint_file="toy3.pt",
            checkpoint_source="tests",
            summary="one conv encoder, SAM decoder, 3 tokens",
        )
    )
    yield spec
    unregister_model("toy3")
    unregister_family("threetoken")


def test_a_new_family_exports_to_onnx_with_its_own_token_rule(toy_model, tmp_path, capsys):
    from samexport.cli import run
    from samexport.export import onnx_export
    from samexport.info import model_info

    info = model_info("toy3")
    assert info["family"] == "threetoken" and "decoder_3_tokens" in info["gmacs"]
    code = run(["convert", "--encoder", "toy3", "--target", "onnx", "--output-dir", str(tmp_path), "--quiet"])
    assert code == 0, capsys.readouterr().err
    manifest = json.loads((tmp_path / "ToyThree.export.json").read_text())
    assert manifest["decoder_prompt"]["token_counts"] == [TOKENS]
    assert manifest["input_contract"]["family"] == "threetoken"
    assert manifest["onnx"]["decoder"]["num_points"] == f"fixed {TOKENS} tokens"
    assert manifest["validation"]["onnx"]["passed"]
    assert manifest["validation"]["onnx"]["decoder"]["worst_masks"]["rel"] <= 1e-4
    session = onnx_export.session(tmp_path / "ToyThreeDecoder.onnx")
    assert [i.name for i in session.get_inputs()] == ["imageEmbeddings", "pointCoords", "pointLabels"]
    assert [i.shape for i in session.get_inputs()][1] == [1, TOKENS, 2]


def test_a_new_family_in_bench_rows_and_reports(toy_model):
    from samexport.bench import report
    from samexport.bench.orchestrate import Bench, BenchOptions

    row = Bench(BenchOptions(encoders=("toy3",)), quiet=True).row_template(
        "toy3", "decoder", 1, "cpu", "fp32", None
    )
    assert row["tokens"] == TOKENS and row["style"] == "threetoken"
    result = {
        "device": {"label": "test"},
        "options": {"target": "onnx"},
        "rows": [{**row, "status": "ok", "stats": {"median_ms": 1.0}}],
    }
    assert "three-token decoder" in report.paper_table([result])
