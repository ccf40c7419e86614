"""The command line: list, info and one-line errors with exit code 2 (in this process, through cli.run)."""

from __future__ import annotations

import json

from helpers import invoke, one_line_error, run_cli


def test_list(capsys):
    out = invoke(capsys, "list")
    assert out.returncode == 0, out.stderr
    for name in (
        "repvit",
        "tinyvit",
        "efficientsam_ti",
        "efficientsam_s",
        "sam_vit_b",
        "sam_vit_l",
        "sam_vit_h",
    ):
        assert name in out.stdout
    assert "27.2M" in out.stdout  # RepViT-SAM params


def test_info_json(capsys):
    out = invoke(capsys, "info", "--encoder", "mobilesam", "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["name"] == "tinyvit" and info["params"]["total"] == 10_130_092
    assert info["input_contract"]["pad_color_rgb"] == [123.675, 116.28, 103.53]
    assert info["family"] == info["input_contract"]["family"] == "sam"


def test_unknown_encoder_one_line_exit_2(capsys):
    message = one_line_error(invoke(capsys, "info", "--encoder", "resnet"))
    assert "unknown model 'resnet'; choose one of: repvit" in message


def test_unknown_option_one_line_exit_2(capsys):
    one_line_error(invoke(capsys, "info", "--encoder", "repvit", "--bogus"))


def test_entry_point_exit_status():
    """The real process: `python -m samexport.cli` exits with the status run() returns."""
    out = run_cli("info", "--encoder", "resnet", timeout=300)
    assert "unknown model 'resnet'" in one_line_error(out)
