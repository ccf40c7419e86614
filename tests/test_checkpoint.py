"""Checkpoint loading: official layouts load strictly; everything else fails with one clear line."""

from __future__ import annotations

import pickle
import re

import pytest
import torch

import samexport
from helpers import FIXTURE_FAMILIES, build_quiet
from samexport.checkpoint import read_checkpoint
from samexport.errors import CheckpointError


def test_wrong_family_is_named(fixture_checkpoint):
    with pytest.raises(CheckpointError, match="looks like tinyvit, not repvit") as info:
        samexport.build_model("repvit", checkpoint=fixture_checkpoint("tinyvit"))
    message = str(info.value)
    assert "\n" not in message and "missing" in message and "unexpected" in message


def test_efficient_sam_sizes_are_told_apart(fixture_checkpoint):
    with pytest.raises(CheckpointError, match="looks like efficientsam_s, not efficientsam_ti") as info:
        samexport.build_model("efficientsam_ti", checkpoint=fixture_checkpoint("efficientsam_s"))
    assert "other shapes" in str(info.value)


def test_efficient_sam_wrapper_and_plain_state_dict_both_load(tmp_path, fixture_checkpoint):
    wrapped = torch.load(fixture_checkpoint("efficientsam_ti"), weights_only=True)
    assert set(wrapped) == {"model"}
    plain = tmp_path / "plain.pt"
    torch.save(wrapped["model"], plain)
    a = samexport.build_model("efficientsam_ti", checkpoint=fixture_checkpoint("efficientsam_ti"))
    b = samexport.build_model("efficientsam_ti", checkpoint=plain)
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


def test_missing_key_is_reported(tmp_path, fixture_checkpoint):
    sd = torch.load(fixture_checkpoint("tinyvit"), weights_only=True)
    del sd["mask_decoder.iou_token.weight"]
    path = tmp_path / "partial.pt"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"1 missing \(mask_decoder.iou_token.weight\)"):
        samexport.build_model("tinyvit", checkpoint=path)


def test_truncated_file(tmp_path, fixture_checkpoint):
    data = fixture_checkpoint("tinyvit").read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"is truncated or damaged \(PytorchStreamReader failed"):
        read_checkpoint(path)


@pytest.mark.parametrize(
    "content,message",
    [
        (b"hello", "is not a PyTorch checkpoint (its contents are neither"),
        (bytes(range(256)) * 4, "is not a PyTorch checkpoint (its contents are neither"),
        (b"\x89PNG\r\n\x1a\n" + bytes(64), "is not a PyTorch checkpoint (it is a PNG image)"),
        (pickle.dumps({"a": 1}, protocol=4), "is a plain Python pickle, not a PyTorch checkpoint"),
    ],
    ids=["text", "random-bytes", "png", "plain-pickle"],
)
def test_what_the_file_is_is_said(tmp_path, content, message):
    path = tmp_path / "notes.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=re.escape(message)) as info:
        read_checkpoint(path)
    assert "refuses to execute" not in str(info.value) and "download it again" not in str(info.value)


class _Payload:
    def __reduce__(self):
        return (print, ("code from a checkpoint ran",))


def test_pickled_code_is_refused_not_run(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(1), "payload": _Payload()}, path)
    with pytest.raises(CheckpointError, match=r"would run code \([\w.]*print\).*refuses to execute"):
        read_checkpoint(path)
    assert "code from a checkpoint ran" not in capsys.readouterr().out


def test_safetensors_checkpoints_load_with_the_same_strict_checks(tmp_path, fixture_checkpoint):
    from safetensors.torch import save_file

    state_dict = torch.load(fixture_checkpoint("tinyvit"), weights_only=True)
    path = tmp_path / "mobile_sam.safetensors"
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(path))
    model = samexport.build_model("tinyvit", checkpoint=path)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state_dict.items())
    with pytest.raises(CheckpointError, match="looks like tinyvit, not repvit"):
        samexport.build_model("repvit", checkpoint=path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="is not a readable safetensors file .*truncated"):
        read_checkpoint(path)


def test_plain_pickle_is_refused(tmp_path):
    path = tmp_path / "state.pkl"
    with open(path, "wb") as f:
        pickle.dump({"a": 1}, f)
    with pytest.raises(CheckpointError):
        read_checkpoint(path)


def test_nan_weights(tmp_path, fixture_checkpoint):
    sd = torch.load(fixture_checkpoint("tinyvit"), weights_only=True)
    sd["image_encoder.neck.0.weight"][0, 0] = float("nan")
    path = tmp_path / "nan.pt"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="NaN/Inf values in 'image_encoder.neck.0.weight'"):
        samexport.build_model("tinyvit", checkpoint=path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        samexport.build_model("repvit", checkpoint=tmp_path / "nope.pt")


def test_tinyvit_bias_cache_quirk_does_not_apply():
    """Loading weights after eval() must take effect (the official TinyViT caches stale biases)."""
    model = build_quiet("tinyvit")
    attn = model.image_encoder.layers[1].blocks[0].attn
    x = torch.randn(1, 49, 128, generator=torch.Generator().manual_seed(0))
    before = attn(x)
    with torch.no_grad():
        attn.attention_biases.add_(1.0)
    assert not torch.allclose(before, attn(x))


@pytest.mark.parametrize("name", sorted(FIXTURE_FAMILIES))
def test_every_family_loads_its_own_fixture(name, fixture_checkpoint):
    assert not samexport.build_model(name, checkpoint=fixture_checkpoint(name)).training
