"""Several prompt sets against one image embedding in one decode call, as the official
`SamPredictor.predict_torch` does (issue 14's batched fixtures, `*.batched.npz`). The embedding is the
official one stored in `*.amg.npz` (see PROMPTS-README.md: the batched file holds only its sha256)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from helpers import build_quiet, rel_err, require_parity_dir, write_fixture_checkpoint

FAMILIES = {"tinyvit": "mobile_sam", "sam_vit_b": "sam_vit_b"}


@pytest.fixture(scope="module", params=list(FAMILIES))
def batched(request, tmp_path_factory):
    family = FAMILIES[request.param]
    parity = require_parity_dir()
    z = np.load(parity / f"{family}.batched.npz")
    amg = np.load(parity / f"{family}.amg.npz")
    checkpoint = write_fixture_checkpoint(
        family, tmp_path_factory.mktemp("ck") / f"{family}.pt", str(z["salt"])
    )
    embedding = amg["image_embeddings"]
    assert hashlib.sha256(embedding.tobytes()).hexdigest() == str(z["image_embeddings_sha256"])
    return build_quiet(request.param, checkpoint), z, torch.from_numpy(embedding)


@pytest.mark.parametrize("group", ["g1", "g2", "g3"])
def test_batched_decode_matches_predict_torch(batched, group):
    model, z, embedding = batched
    masks, iou = model.decode(embedding, z[f"{group}_coords_model"], z[f"{group}_labels_model"])
    assert masks.shape[0] == len(z[f"{group}_coords_model"])
    # multimask_output=False is token 0, True tokens 1..3, exactly as the official decoder slices them
    assert rel_err(masks[:, :1], z[f"{group}_single_low_res_masks"]) <= 1e-4
    assert rel_err(masks[:, 1:], z[f"{group}_multi_low_res_masks"]) <= 1e-4
    np.testing.assert_allclose(iou[:, :1].numpy(), z[f"{group}_single_iou_predictions"], atol=1e-5)
    np.testing.assert_allclose(iou[:, 1:].numpy(), z[f"{group}_multi_iou_predictions"], atol=1e-5)


def test_each_batch_element_is_the_prompt_decoded_alone(batched):
    model, z, embedding = batched
    coords, labels = z["g1_coords_model"], z["g1_labels_model"]
    masks, iou = model.decode(embedding, coords, labels)
    for i in range(len(coords)):
        alone, alone_iou = model.decode(embedding, coords[i : i + 1], labels[i : i + 1])
        assert rel_err(masks[i : i + 1], alone) <= 1e-5 and rel_err(iou[i : i + 1], alone_iou) <= 1e-5


def test_prompt_coordinates_in_the_model_frame(batched):
    model, z, _ = batched
    hw = tuple(int(v) for v in z["original_size"])
    boxes = model.transform_coords(z["g1_boxes_original"].reshape(-1, 2, 2), hw).reshape(-1, 4)
    np.testing.assert_allclose(boxes.numpy(), z["g1_boxes_model"], atol=1e-4)
    points = model.transform_coords(z["g2_points_original"], hw)
    np.testing.assert_allclose(points.numpy(), z["g2_points_model"], atol=1e-4)
