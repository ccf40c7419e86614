"""The command line: list, info and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "samexport.cli", *args], capture_output=True, text=True,
                          timeout=300)


def test_list():
    out = run("list")
    assert out.returncode == 0, out.stderr
    for name in ("repvit", "tinyvit", "efficientsam_ti", "efficientsam_s", "sam_vit_b", "sam_vit_l", "sam_vit_h"):
        assert name in out.stdout
    assert "27.2M" in out.stdout  # RepViT-SAM params


def test_info_json():
    out = run("info", "--encoder", "mobilesam", "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["name"] == "tinyvit" and info["params"]["total"] == 10_130_092
    assert info["input_contract"]["pad_color_rgb"] == [123.675, 116.28, 103.53]


def test_unknown_encoder_one_line_exit_2():
    out = run("info", "--encoder", "resnet")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert "unknown model 'resnet'; choose one of: repvit" in out.stderr


def test_unknown_option_one_line_exit_2():
    out = run("info", "--encoder", "repvit", "--bogus")
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0
