"""Registry, API contract and the models without fixtures (SAM ViT-L/H: shapes only)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import samexport
from helpers import FIXTURE_FAMILIES, build_quiet
from samexport.checkpoint import expected_layout
from samexport.errors import InputError, UsageError
from samexport.info import model_info


def test_list_models_names():
    assert samexport.list_models() == [
        "repvit",  # each family package registers its rows, in FAMILY_PACKAGES order
        "tinyvit",
        "sam_vit_b",
        "sam_vit_l",
        "sam_vit_h",
        "efficientsam_ti",
        "efficientsam_s",
        "rapsam_r50",
        "edgetam",
    ]
    assert samexport.get_spec("mobilesam").name == "tinyvit"


def test_unknown_model_lists_choices():
    with pytest.raises(UsageError, match="choose one of: repvit, tinyvit"):
        samexport.build_model("vit_tiny")


def test_random_weights_warn_once_and_are_deterministic():
    with pytest.warns(samexport.RandomWeightsWarning, match="masks will be meaningless but latency is valid"):
        a = samexport.build_model("tinyvit")
    b = build_quiet("tinyvit")
    assert not a.training
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_random_weights_are_the_parity_fill(parity_dir):
    """Without a checkpoint, a model holds exactly the parity fixtures' weights (salt "")."""
    from fill import fill_state_dict, load_manifest

    model = build_quiet("repvit")
    official = fill_state_dict(load_manifest(parity_dir / "repvit_sam.manifest.json"))
    ours = model.state_dict()
    assert list(official) == list(ours)  # official key order too
    for key, value in official.items():
        assert torch.equal(ours[key], value), key


@pytest.mark.parametrize("name,family", sorted(FIXTURE_FAMILIES.items()))
def test_layout_is_the_official_layout(parity_dir, name, family):
    from fill import load_manifest

    manifest = load_manifest(parity_dir / f"{family}.manifest.json")
    assert list(expected_layout(name).items()) == [(k, tuple(s)) for k, s, _ in manifest["keys"]]


@pytest.mark.parametrize(
    "name,width,depth,global_blocks,params",
    [
        ("sam_vit_l", 1024, 24, (5, 11, 17, 23), 312_342_832),
        ("sam_vit_h", 1280, 32, (7, 15, 23, 31), 641_090_608),
    ],
)
def test_large_sam_shapes(name, width, depth, global_blocks, params):
    layout = expected_layout(name)
    assert layout["image_encoder.pos_embed"] == (1, 64, 64, width)
    assert sum(1 for k in layout if k.endswith(".attn.qkv.weight")) == depth
    for i in range(depth):
        table = layout[f"image_encoder.blocks.{i}.attn.rel_pos_h"]
        assert table == ((127 if i in global_blocks else 27), width // 16), i
    info = model_info(name)
    assert info["params"]["total"] == params
    assert info["shapes"]["image_embeddings"] == [1, 256, 64, 64]
    assert info["shapes"]["low_res_masks"] == [1, 4, 256, 256]


def test_info_gmacs_match_known_counts():
    expected = {
        "repvit": 113.3,
        "tinyvit": 38.8,
        "efficientsam_ti": 102.3,
        "efficientsam_s": 245.6,
        "sam_vit_b": 486.0,
    }
    for name, gmacs in expected.items():
        assert model_info(name)["gmacs"]["encoder_1024"] == pytest.approx(gmacs, abs=0.1), name


def test_preprocess_rejects_bad_images():
    model = build_quiet("efficientsam_ti")
    with pytest.raises(InputError, match="HxWx3 uint8"):
        model.preprocess(np.zeros((32, 32), np.uint8))
    with pytest.raises(InputError, match="HxWx3 uint8"):
        model.preprocess(np.zeros((32, 32, 3), np.float32))


def test_decode_validates_prompts():
    model = build_quiet("tinyvit")
    emb = torch.zeros(1, 256, 64, 64)
    with pytest.raises(InputError, match="labels must be -1, 0, 1, 2 or 3"):
        model.decode(emb, [[10.0, 10.0]], [7])
    with pytest.raises(InputError, match="disagree"):
        model.decode(emb, [[10.0, 10.0], [5.0, 5.0]], [1])
    low_res, iou = model.decode(emb, [[10.0, 10.0]], [1])
    assert tuple(low_res.shape) == (1, 4, 256, 256) and tuple(iou.shape) == (1, 4)


def test_efficient_sam_pads_to_six_tokens_and_has_no_mask_prompt():
    model = build_quiet("efficientsam_ti")
    emb = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(0))
    short = model.decode(emb, [[100.0, 200.0]], [1])
    padded = model.decode(emb, [[100.0, 200.0]] + [[-1.0, -1.0]] * 5, [1] + [-1] * 5)
    assert torch.equal(short[0], padded[0]) and torch.equal(short[1], padded[1])
    with pytest.raises(InputError, match="no mask prompt"):
        model.decode(emb, [[100.0, 200.0]], [1], mask_input=torch.zeros(1, 1, 256, 256))
