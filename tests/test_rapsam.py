"""RAP-SAM (rapsam_r50): the official checkpoint layout loads strictly, and the model computes what the
official code computes on the parity fixture (`rap_sam_r50.*`, see RAPSAM-README.md there).

Tolerances (issue 16): preprocessing exact; backbone 1e-5; mask features and prompt logits within
1e-4 x max |ref|; panoptic class and mask logits within 1e-3 x max |ref| (the hard-mask pooling moves
whole feature vectors when a logit crosses 0, so float32 noise grows there).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import samexport
from helpers import fixture_npz, require_parity_dir, write_rapsam_fixture_files
from samexport.checkpoint import expected_layout, random_state_dict, read_checkpoint
from samexport.errors import CheckpointError, InputError, UsageError
from samexport.families.rapsam.family import fill_classifier
from samexport.families.rapsam.pipelines import panoptic_segments
from samexport.modeling.deform_conv import ModulatedDeformConv2d
from samexport.modeling.rapsam import RapSam
from samexport.reparam import reparameterize_model

FAMILY = "rap_sam_r50"
H, W = 480, 640
RESIZED = (800, 1067)


def rel(ours, ref) -> float:
    """max |ours - ref| / max |ref|."""
    ref = np.asarray(ref, dtype=np.float64)
    return float(np.abs(np.asarray(ours, dtype=np.float64) - ref).max() / np.abs(ref).max())


def sampled(tensor: torch.Tensor, z, key: str) -> np.ndarray:
    return tensor.reshape(-1).numpy()[z[f"{key}_sample_idx"]]


@pytest.fixture(scope="module")
def z():
    return fixture_npz(FAMILY)


@pytest.fixture(scope="module")
def files(tmp_path_factory, z):
    """The fixture fill saved as the official files: mmengine's {"state_dict": ...} and the classifier."""
    checkpoint, classifier = write_rapsam_fixture_files(tmp_path_factory.mktemp("rapsam"))
    assert set(torch.load(checkpoint, weights_only=True)) == {"state_dict"}
    return checkpoint, classifier


def _manifest():
    return require_parity_dir() / f"{FAMILY}.manifest.json"


@pytest.fixture(scope="module")
def model(files):
    checkpoint, classifier = files
    return samexport.build_model("rapsam", checkpoint=checkpoint, classifier=classifier)


@pytest.fixture(scope="module")
def encoded(model, z):
    """(input tensor, backbone outputs, mask features) of the fixture image."""
    x = model.preprocess(z["image"])
    with torch.no_grad():
        backbone = model.backbone(x)
        features = model.neck(backbone)
    return x, backbone, features


@pytest.fixture(scope="module")
def panoptic(model, encoded):
    return model.panoptic(encoded[2])


def test_layout_is_the_official_layout(parity_dir):
    manifest = json.loads((parity_dir / f"{FAMILY}.manifest.json").read_text())
    assert list(expected_layout("rapsam_r50").items()) == [(k, tuple(s)) for k, s, _ in manifest["keys"]]


def test_random_weights_and_classifier_are_the_parity_fill(z):
    require_parity_dir()
    from fill import load_manifest, make_checkpoint

    official = make_checkpoint(load_manifest(_manifest()), salt="")["state_dict"]
    ours = random_state_dict(RapSam())
    assert set(ours) == set(official) and all(torch.equal(ours[k], v) for k, v in official.items())
    from samexport.checkpoint import random_fill

    classes = fill_classifier(random_fill)
    np.testing.assert_array_equal(classes.reshape(-1)[:16].numpy(), z["ov_classifier_sample"])


def test_preprocessing_is_exact(model, encoded, z):
    x = encoded[0]
    assert tuple(x.shape) == (1, 3, *z["input_size"].tolist())
    np.testing.assert_array_equal(sampled(x, z, "input_tensor"), z["input_tensor_sample"])
    assert model.last_resized_hw == tuple(z["resized_size"].tolist()) == RESIZED
    assert not x[..., RESIZED[0] :, :].any() and not x[..., RESIZED[1] :].any()


def test_backbone_and_mask_features(encoded, z):
    _, backbone, features = encoded
    for level, c in enumerate(backbone, start=2):
        assert list(c.shape) == z[f"backbone_c{level}_shape"].tolist()
        np.testing.assert_allclose(
            sampled(c, z, f"backbone_c{level}"), z[f"backbone_c{level}_sample"], atol=1e-5
        )
    assert list(features.shape) == z["mask_features_shape"].tolist()
    assert rel(sampled(features, z, "mask_features"), z["mask_features_sample"]) <= 1e-4
    assert rel(features[0, :, 0, :], z["mask_features_row0"]) <= 1e-4
    assert rel(features[0, :, 100, 136], z["mask_features_pixel_100_136"]) <= 1e-4
    np.testing.assert_allclose(features[0].mean((1, 2)), z["mask_features_channel_mean"], atol=5e-5)


def case_prompts(z, i: int):
    """(points, boxes) in original pixels, and the order of the official queries in ours (clicks first)."""
    kinds = json.loads(str(z[f"case_{i}_kinds_json"]))
    rows = z[f"case_{i}_prompts_original"]
    points = [r[:2].tolist() for r, k in zip(rows, kinds) if k == "point"]
    boxes = [r.tolist() for r, k in zip(rows, kinds) if k == "box"]
    order = [j for j, k in enumerate(kinds) if k == "point"] + [j for j, k in enumerate(kinds) if k == "box"]
    return points, boxes, order


@pytest.mark.parametrize("i", range(5))
def test_prompt_queries_are_the_official_ones(model, z, i):
    points, boxes, order = case_prompts(z, i)
    prompts = model.prompt_tokens((H, W), points=points, boxes=boxes)
    np.testing.assert_array_equal(prompts[0].numpy(), z[f"case_{i}_point_coords_model"][order])
    from samexport.modeling.rapsam_head import box_encoding

    encoding = box_encoding(prompts, RESIZED)
    np.testing.assert_allclose(encoding[0], z[f"case_{i}_query_pos_encoding"][0][order], atol=1e-6)
    with torch.no_grad():
        queries = model.panoptic_head.prompt_queries(prompts, RESIZED)
    np.testing.assert_allclose(queries[0], z[f"case_{i}_initial_queries"][0][order], atol=1e-6)


@pytest.mark.parametrize("i", range(5))
def test_prompt_masks_and_iou(model, encoded, z, i):
    points, boxes, order = case_prompts(z, i)
    prompts = model.prompt_tokens((H, W), points=points, boxes=boxes)
    logits, iou = model.decode(encoded[2], prompts)  # image size: the one preprocess recorded
    assert rel(logits[0], z[f"case_{i}_mask_logits"][0][order]) <= 1e-4
    np.testing.assert_allclose(iou[0], z[f"case_{i}_iou_predictions"][0][order], atol=2e-5)
    masks = model.postprocess_masks(logits, (H, W)) > 0
    assert (masks[0].numpy() != z[f"case_{i}_masks"][order]).mean() <= 5e-4


def test_decode_needs_the_resized_size(encoded):
    fresh = RapSam()
    with pytest.raises(InputError, match="pass image_size"):
        fresh.decode(encoded[2], torch.zeros(1, 1, 4))


def test_prompt_input_errors():
    with pytest.raises(InputError, match="at least one click or box"):
        RapSam.prompt_tokens((H, W))
    with pytest.raises(InputError, match="x1 >= x0"):
        RapSam.prompt_tokens((H, W), boxes=[[10, 10, 5, 20]])
    with pytest.raises(InputError, match="rows of 2 numbers"):
        RapSam.prompt_tokens((H, W), points=[[1, 2, 3]])


def test_panoptic_logits(panoptic, z):
    classes, masks = panoptic
    assert tuple(classes.shape) == (1, 100, 134) and list(masks.shape) == z["pan_mask_logits_shape"].tolist()
    assert rel(classes, z["pan_cls_scores"]) <= 1e-3
    assert not classes[..., 133].any()  # the no-object prototype is the zero vector
    assert rel(sampled(masks, z, "pan_mask_logits"), z["pan_mask_logits_sample"]) <= 1e-3
    assert rel(masks[0, z["pan_whole_queries"]], z["pan_whole_mask_logits"]) <= 1e-3


def test_panoptic_fusion(model, panoptic, z):
    classes, masks = panoptic
    seg, segments = panoptic_segments(classes, masks, (H, W), model.last_resized_hw)
    np.testing.assert_array_equal(seg, z["pan_seg"])
    assert segments == json.loads(str(z["pan_segments_info_json"]))
    supp = json.loads(str(z["pan_supp_test_cfg_json"]))
    seg, segments = panoptic_segments(
        classes,
        masks,
        (H, W),
        model.last_resized_hw,
        object_mask_thr=supp["object_mask_thr"],
        iou_thr=supp["iou_thr"],
    )
    assert (seg != z["pan_supp_seg"]).mean() <= 0.01
    official = json.loads(str(z["pan_supp_segments_info_json"]))
    assert {(s["category_id"], s["isthing"]) for s in segments} == {
        (s["category_id"], s["isthing"]) for s in official
    }


def test_checkpoint_without_classifier_segments_prompts_but_refuses_panoptic(files, encoded, z):
    model = samexport.build_model("rapsam_r50", checkpoint=files[0])
    logits, _ = model.decode(encoded[2], model.prompt_tokens((H, W), points=[[203, 197]]), RESIZED)
    assert rel(logits[0], z["case_0_mask_logits"][0]) <= 1e-4
    with pytest.raises(InputError, match="needs the open-vocabulary classifier.*gen_cls.py") as info:
        model.panoptic(encoded[2])
    assert "\n" not in str(info.value)


def test_classifier_file_is_checked(tmp_path):
    bad_shape = tmp_path / "shape.pth"
    torch.save(torch.ones(10, 17, 768), bad_shape)
    not_normalised = tmp_path / "norm.pth"
    torch.save(torch.ones(133, 17, 768), not_normalised)
    cases = [
        (tmp_path / "missing.pth", UsageError, "does not exist"),
        (
            bad_shape,
            CheckpointError,
            r"holds \(10, 17, 768\); expected .*\(133, 17, 768\) for COCO panoptic "
            r".*\(40, 17, 768\) for YouTube-VIS",
        ),
        (not_normalised, CheckpointError, "not L2-normalised"),
    ]
    for path, error, message in cases:
        with pytest.raises(error, match=message):
            samexport.build_model("rapsam_r50", classifier=path)


def test_other_families_take_no_classifier(tmp_path):
    with pytest.raises(UsageError, match="tinyvit does not take classifier"):
        samexport.build_model("tinyvit", classifier=tmp_path / "c.pth")


def test_ddp_module_prefix_is_dropped(tmp_path):
    path = tmp_path / "ddp.pth"
    torch.save({"state_dict": {"module.a.weight": torch.ones(2)}, "meta": {"epoch": 12}}, path)
    assert list(read_checkpoint(path)) == ["a.weight"]


def test_fused_encoder_matches(model, encoded):
    fused = reparameterize_model(model)
    assert fused.num_fused_modules > 0
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    x = encoded[0][..., :256, :352]
    with torch.no_grad():
        assert rel(fused.image_encoder(x), model.image_encoder(x)) <= 1e-5


def naive_modulated_deform_conv(x, offset, mask, weight, padding=1):
    """float64 reference: explicit bilinear sampling per kernel point, zero outside (mmcv's rule)."""
    x, offset, mask, weight = (t.double() for t in (x, offset, mask, weight))
    b, c, h, w = x.shape
    o, _, k, _ = weight.shape
    out_h, out_w = offset.shape[-2:]
    out = torch.zeros(b, o, out_h, out_w, dtype=torch.float64)
    for i in range(k):
        for j in range(k):
            t = i * k + j
            y = torch.arange(out_h).view(-1, 1) - padding + i + offset[:, 2 * t]
            xx = torch.arange(out_w).view(1, -1) - padding + j + offset[:, 2 * t + 1]
            y0, x0 = y.floor(), xx.floor()
            sample = torch.zeros(b, c, out_h, out_w, dtype=torch.float64)
            for dy in (0, 1):
                for dx in (0, 1):
                    yy, xc = y0 + dy, x0 + dx
                    wgt = (1 - (y - yy).abs()) * (1 - (xx - xc).abs())
                    inside = (yy >= 0) & (yy < h) & (xc >= 0) & (xc < w)
                    flat = (
                        (yy.clamp(0, h - 1) * w + xc.clamp(0, w - 1)).long().view(b, 1, -1).expand(b, c, -1)
                    )
                    vals = x.reshape(b, c, -1).gather(2, flat).view(b, c, out_h, out_w)
                    sample += vals * (wgt * inside).unsqueeze(1)
            out += torch.einsum("oc,bchw->bohw", weight[:, :, i, j], sample * mask[:, t].unsqueeze(1))
    return out


def test_deformable_convolution_is_mmcv_dcnv2():
    """Offsets of std 2.5, a third of them integers, many outside the image; channel 2k = dy, 2k + 1 = dx."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 9, 11, generator=g)
    offset = torch.randn(2, 18, 9, 11, generator=g) * 2.5
    offset[:, ::3] = offset[:, ::3].round()
    mask = torch.rand(2, 9, 9, 11, generator=g)
    conv = ModulatedDeformConv2d(5, 4)
    torch.nn.init.normal_(conv.weight, generator=g)
    with torch.no_grad():
        ours = conv(x, offset, mask).double()
        reference = naive_modulated_deform_conv(x, offset, mask, conv.weight)
    assert float((ours - reference).abs().max()) < 1e-5 * float(reference.abs().max())
    swapped = offset.view(2, 9, 2, 9, 11).flip(2).reshape(2, 18, 9, 11)
    with torch.no_grad():
        wrong = naive_modulated_deform_conv(x, swapped, mask, conv.weight)
    assert float((wrong - reference).abs().max()) > 0.1


def test_sampling_by_gather_equals_grid_sample():
    """The deformable convolution Core AI exports (explicit bilinear gathers) computes what grid_sample
    does, taps outside the image included (offsets of several pixels)."""
    from samexport.modeling.deform_conv import modulated_deform_conv, sampling_by_gather

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 20, 28, generator=generator)
    weight = torch.randn(4, 8, 3, 3, generator=generator)
    offset = torch.randn(2, 18, 20, 28, generator=generator) * 3
    mask = torch.rand(2, 9, 20, 28, generator=generator)
    sampled = modulated_deform_conv(x, weight, offset, mask, 1)
    with sampling_by_gather():
        gathered = modulated_deform_conv(x, weight, offset, mask, 1)
    assert float((sampled - gathered).abs().max()) <= 1e-6 * float(sampled.abs().max()) * 10
