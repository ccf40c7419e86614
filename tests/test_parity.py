"""Our models are the official models: preprocessing, embeddings and every decoder case of the
parity fixtures, loaded through the real checkpoint path. Bar: max abs error <= 1e-4 x max |ref|."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import FIXTURE_FAMILIES, build_quiet, fixture_npz, rel_err

REL_TOL = 1e-4


def assert_rel_close(actual, expected, what: str, rel: float = REL_TOL) -> float:
    assert np.shape(actual) == np.shape(expected), f"{what}: shape {np.shape(actual)} != {np.shape(expected)}"
    err = rel_err(actual, expected)
    assert err <= rel, f"{what}: max abs error is {err:.2e} of max |ref| (bar {rel:.0e})"
    return err


def decoder_cases(z):
    i = 0
    while f"case_{i}_coords_model" in z.files:
        mask = None
        if i == 4:
            mask = z["case_0_low_res_masks"][:, int(z["case_4_mask_input_token"])][None]
        yield i, mask
        i += 1


# The two largest encoders take 25-35 s each at 1024 on two cores: slow tier.
SLOW_FAMILIES = {"efficientsam_s", "sam_vit_b"}


@pytest.fixture(
    scope="module",
    params=[pytest.param(n, marks=pytest.mark.slow) if n in SLOW_FAMILIES else n for n in FIXTURE_FAMILIES],
    ids=list(FIXTURE_FAMILIES),
)
def loaded(request, fixture_checkpoint):
    name = request.param
    z = fixture_npz(FIXTURE_FAMILIES[name])
    return name, build_quiet(name, fixture_checkpoint(name)), z


def test_preprocessing_matches_official(loaded):
    _, model, z = loaded
    x = model.preprocess(z["image"])
    assert tuple(x.shape) == (1, 3, 1024, 1024) and x.dtype == torch.float32
    flat = x.reshape(-1).numpy()
    np.testing.assert_allclose(
        flat[z["input_tensor_sample_idx"]], z["input_tensor_sample"], rtol=0, atol=1e-5
    )
    stats = [flat.mean(dtype=np.float64), flat.std(dtype=np.float64), flat.min(), flat.max()]
    np.testing.assert_allclose(stats, z["input_tensor_stats"], rtol=0, atol=1e-5)


def test_image_embeddings_match_official(loaded):
    _, model, z = loaded
    emb = model.encode_image(z["image"])
    assert_rel_close(emb.numpy(), z["image_embeddings"], "image embeddings")


def test_every_decoder_case_matches_official(loaded):
    _, model, z = loaded
    cases = list(decoder_cases(z))
    assert len(cases) >= 4
    for i, mask in cases:
        low_res, iou = model.decode(
            z["image_embeddings"], z[f"case_{i}_coords_model"], z[f"case_{i}_labels_model"], mask_input=mask
        )
        assert_rel_close(low_res.numpy(), z[f"case_{i}_low_res_masks"], f"case {i} low-res logits")
        assert_rel_close(iou.numpy(), z[f"case_{i}_iou_predictions"], f"case {i} IoU")
        sparse = model.prompt_encoder.embed_points(
            torch.as_tensor(z[f"case_{i}_coords_model"]), torch.as_tensor(z[f"case_{i}_labels_model"])
        )
        np.testing.assert_allclose(
            sparse.detach().numpy(), z[f"case_{i}_sparse_embeddings"], rtol=0, atol=1e-5
        )


def test_prompt_tokens_and_upscaled_masks_match_official(loaded):
    """From original-pixel clicks/boxes to the official token list, and the official final masks."""
    _, model, z = loaded
    hw = tuple(int(v) for v in z["original_size"])
    for i, case in enumerate(json.loads(str(z["cases_json"]))):
        coords, labels = model.prompt_tokens(hw, case["points"], case["labels"], case["box"])
        np.testing.assert_allclose(coords.numpy(), z[f"case_{i}_coords_model"], rtol=0, atol=1e-4)
        np.testing.assert_array_equal(labels.numpy(), z[f"case_{i}_labels_model"])
        masks = model.postprocess_masks(torch.as_tensor(z[f"case_{i}_low_res_masks"])[:, 1:], hw)[0] > 0
        differ = float((masks.numpy() != z[f"case_{i}_multimask_masks"]).mean())
        assert differ <= 5e-4, f"case {i}: {differ:.4%} of mask pixels differ from the official masks"
        np.testing.assert_allclose(z[f"case_{i}_iou_predictions"][0, 1:], z[f"case_{i}_multimask_scores"])


def test_transform_coords_matches_official(loaded):
    _, model, z = loaded
    hw = tuple(int(v) for v in z["original_size"])
    case = json.loads(str(z["cases_json"]))[0]
    coords = model.transform_coords(np.asarray(case["points"], dtype=np.float32), hw)
    np.testing.assert_array_equal(coords.numpy(), z["case_0_coords_model"][0, :1])
