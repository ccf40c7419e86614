"""Everything mode against the official `SamAutomaticMaskGenerator` (PROMPTS-README.md, `*.amg.npz`).

Decoder-level runs use the official image embedding stored in the fixture; end-to-end runs use our
encoder (the `crop` run needs an embedding per crop, which the fixture only summarises). The
official quirks the random-weight fixture cannot show (suppression between different boxes, ties,
small-region removal) are unit-tested against the semantics the README lists.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import (
    assert_same_counts,
    assert_same_records,
    build_quiet,
    official_run,
    require_parity_dir,
    write_fixture_checkpoint,
)
from samexport import amg
from samexport.errors import InputError
from samexport.mask_generator import MaskGenerator
from samexport.predictor import TorchPredictor

FAMILIES = {"mobile_sam": "tinyvit", "sam_vit_b": "sam_vit_b"}


class StoredEmbedding(TorchPredictor):
    """The official full-image embedding for the fixture image; decoder calls memoized, so runs that
    differ only after decoding (base vs nms1) decode once."""

    def __init__(self, model, fixture) -> None:
        super().__init__(model)
        self.fixture = fixture
        self.memo = {}

    def encode(self, image):
        if image.shape[:2] == tuple(self.fixture["original_size"]):
            return torch.from_numpy(self.fixture["image_embeddings"])
        return super().encode(image)

    def decode(self, embeddings, coords, labels):
        key = (embeddings.sum().item(), coords.numpy().tobytes())
        if key not in self.memo:
            self.memo[key] = super().decode(embeddings, coords, labels)
        return self.memo[key]


@pytest.fixture(scope="module", params=list(FAMILIES))
def fixture_model(request, tmp_path_factory):
    family = request.param
    z = np.load(require_parity_dir() / f"{family}.amg.npz")
    checkpoint = write_fixture_checkpoint(
        family, tmp_path_factory.mktemp("ck") / f"{family}.pt", str(z["salt"])
    )
    model = build_quiet(FAMILIES[family], checkpoint)
    return model, z, StoredEmbedding(model, z)


@pytest.mark.slow
@pytest.mark.parametrize("run", ["nms1", "base"])
def test_decoder_level_records_match_the_official_generator(fixture_model, run):
    _, z, predictor = fixture_model
    meta = official_run(z, run)
    generator = MaskGenerator(predictor, **meta["kwargs"])
    records = generator.generate(z["image"])
    assert_same_records(records, z, run)
    assert_same_counts(generator, meta)


@pytest.mark.slow
def test_crop_layers_end_to_end(fixture_model):
    """Our encoder on every crop (Pillow resize of each crop), per-crop grids, edge filter, cross-crop NMS."""
    model, z, _ = fixture_model
    if model.spec.name != "tinyvit":
        pytest.skip("one family end to end keeps the slow tier short; ViT-B runs the decoder-level checks")
    meta = official_run(z, "crop")
    generator = MaskGenerator(model, **meta["kwargs"])
    records = generator.generate(z["image"])
    assert_same_records(records, z, "crop")
    assert_same_counts(generator, meta)
    np.testing.assert_array_equal(
        amg.generate_crop_boxes((480, 640), 1, meta["kwargs"]["crop_overlap_ratio"])[0], z["crop_crop_boxes"]
    )
    for grid, ref in zip(generator.point_grids, z["crop_point_grids"], strict=True):
        np.testing.assert_array_equal(grid, ref)
    assert set(generator.timings) == {"encoder", "decoder", "upscale", "postprocess", "total"}


def test_point_grid_is_row_major_with_x_fastest():
    points = amg.build_point_grid(16) * np.array([640, 480])
    assert points[:2].tolist() == [[20.0, 15.0], [60.0, 15.0]]
    assert points[16].tolist() == [20.0, 45.0] and points[-1].tolist() == [620.0, 465.0]


def test_crop_boxes_overlap_and_clip_as_officially():
    boxes, layers = amg.generate_crop_boxes((480, 640), 1, 512 / 1500)
    assert boxes == [
        [0, 0, 640, 480],
        [0, 0, 402, 322],
        [0, 159, 402, 480],
        [239, 0, 640, 322],
        [239, 159, 640, 480],
    ]
    assert layers == [0, 1, 1, 1, 1]


def test_nms_suppresses_only_above_the_threshold_and_keeps_tie_order():
    same = np.array([[0, 0, 10, 10]] * 3, dtype=np.float32)
    assert amg.box_nms(same, np.array([0.5, 0.9, 0.5]), 1.0).tolist() == [1, 0, 2]  # IoU 1.0 is not > 1.0
    assert amg.box_nms(same, np.array([0.5, 0.9, 0.5]), 0.99).tolist() == [1]
    apart = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [100, 100, 110, 110]], dtype=np.float32)
    # IoU of the first two is 50 / 150 = 1/3: kept at 1/3 (not greater), suppressed just below
    assert amg.box_nms(apart, np.array([0.9, 0.8, 0.1]), np.float32(1 / 3)).tolist() == [0, 1, 2]
    assert amg.box_nms(apart, np.array([0.9, 0.8, 0.1]), 0.3).tolist() == [0, 2]
    assert amg.box_nms(np.zeros((0, 4)), np.zeros(0), 0.7).tolist() == []


def test_boxes_have_inclusive_maxima_and_empty_masks_give_zeros():
    masks = torch.zeros(2, 6, 8, dtype=torch.bool)
    masks[0, 2:4, 3:7] = True
    assert amg.masks_to_boxes(masks).tolist() == [[3, 2, 6, 3], [0, 0, 0, 0]]
    assert amg.xyxy_to_xywh([3, 2, 6, 3]) == [3, 2, 3, 1]


def test_stability_score_is_nan_for_an_empty_union():
    logits = torch.full((2, 4, 4), -5.0)
    logits[1, :2] = 3.0
    logits[1, 2, :2] = 0.5
    score = amg.stability_score(logits, 0.0, 1.0)
    assert torch.isnan(score[0]) and score[1].item() == pytest.approx(8 / 10)
    assert score.dtype == torch.float32


def test_crop_edge_filter_spares_image_edges():
    crop = [0, 0, 402, 322]
    boxes = torch.tensor([[0, 0, 100, 100], [10, 10, 395, 100], [100, 100, 200, 200]])
    assert amg.near_crop_edge(boxes, crop, [0, 0, 640, 480]).tolist() == [False, True, False]


def test_rle_forms_agree_with_pycocotools():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(0)
    masks = rng.random((3, 7, 5)) > 0.5
    masks[2] = False
    for mask, rle in zip(masks, amg.encode_rle(masks)):
        np.testing.assert_array_equal(amg.decode_rle(rle), mask)
        plain = amg.uncompressed_rle(mask)
        assert sum(plain["counts"]) == mask.size and sum(plain["counts"][1::2]) == mask.sum()
        np.testing.assert_array_equal(amg.decode_rle(plain), mask)
        assert mask_utils.area(rle) == mask.sum()


def test_small_regions_fill_holes_and_drop_islands():
    mask = np.zeros((20, 20), dtype=bool)
    mask[2:12, 2:12] = True
    mask[5, 5] = False  # a one-pixel hole
    mask[16:18, 16:18] = True  # a four-pixel island
    filled, changed = amg.remove_small_regions(mask, 5, "holes")
    assert changed and filled[5, 5] and filled.sum() == 104
    cleaned, changed = amg.remove_small_regions(filled, 5, "islands")
    assert changed and cleaned.sum() == 100
    same, changed = amg.remove_small_regions(cleaned, 5, "islands")
    assert not changed and same is cleaned
    lone = np.zeros((9, 9), dtype=bool)
    lone[1, 1] = lone[5:7, 5:7] = True  # every island small: the largest stays
    kept, _ = amg.remove_small_regions(lone, 10, "islands")
    assert kept.sum() == 4 and kept[5, 5]


def test_generator_arguments_are_checked(fixture_model):
    _, _, predictor = fixture_model
    with pytest.raises(InputError, match="exactly one of points_per_side and point_grids"):
        MaskGenerator(predictor, points_per_side=None)
    with pytest.raises(InputError, match="output_mode"):
        MaskGenerator(predictor, output_mode="png")


def test_output_modes_carry_the_same_mask(fixture_model):
    _, z, predictor = fixture_model
    kwargs = {**official_run(z, "base")["kwargs"], "points_per_side": 2}
    binary = MaskGenerator(predictor, **kwargs).generate(z["image"])
    for mode in ("coco_rle", "uncompressed_rle"):
        records = MaskGenerator(predictor, **{**kwargs, "output_mode": mode}).generate(z["image"])
        assert len(records) == len(binary)
        for a, b in zip(records, binary):
            np.testing.assert_array_equal(amg.decode_rle(a["segmentation"]), b["segmentation"])
            assert {k: v for k, v in a.items() if k != "segmentation"} == {
                k: v for k, v in b.items() if k != "segmentation"
            }


def test_small_region_removal_reruns_nms_preferring_unchanged_masks(fixture_model):
    _, z, predictor = fixture_model
    kwargs = {**official_run(z, "nms1")["kwargs"], "points_per_side": 2, "pred_iou_thresh": 0.0}
    kwargs["stability_score_thresh"] = 0.0
    plain = MaskGenerator(predictor, **kwargs).generate(z["image"])
    cleaned = MaskGenerator(predictor, **{**kwargs, "min_mask_region_area": 50}).generate(z["image"])
    assert 0 < len(cleaned) <= len(plain)
    for record in cleaned:
        islands = amg.remove_small_regions(record["segmentation"], 50, "islands")[1]
        holes = amg.remove_small_regions(record["segmentation"], 50, "holes")[1]
        assert not islands and not holes
        y, x = np.nonzero(record["segmentation"])
        assert record["bbox"] == [x.min(), y.min(), x.max() - x.min(), y.max() - y.min()]


def test_efficientsam_everything_mode_is_refused_with_the_reason():
    model = build_quiet("efficientsam_ti")
    with pytest.raises(InputError, match="refused for EfficientSAM.*use a SAM-family model"):
        MaskGenerator(model)
