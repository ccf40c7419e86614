"""Shared fixtures: the parity fixtures in ../shared/parity and checkpoints built from them."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PARITY_DIR = Path(os.environ.get("SAMEXPORT_PARITY_DIR", ROOT.parent / "shared" / "parity"))

# registry name -> parity fixture family
FIXTURE_FAMILIES = {
    "repvit": "repvit_sam",
    "tinyvit": "mobile_sam",
    "efficientsam_ti": "efficient_sam_vitt",
    "efficientsam_s": "efficient_sam_vits",
    "sam_vit_b": "sam_vit_b",
}


def require_parity_dir() -> Path:
    if not (PARITY_DIR / "fill.py").is_file():
        message = f"parity fixtures not found at {PARITY_DIR} (set SAMEXPORT_PARITY_DIR)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    if str(PARITY_DIR) not in sys.path:
        sys.path.insert(0, str(PARITY_DIR))
    return PARITY_DIR


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    return require_parity_dir()


def fixture_npz(family: str):
    return np.load(require_parity_dir() / f"{family}.expected.npz")


def write_fixture_checkpoint(family: str, path: Path, salt: str = "") -> Path:
    """The official checkpoint layout filled by the fixtures' rule, saved like the official file."""
    require_parity_dir()
    from fill import load_manifest, make_checkpoint

    torch.save(make_checkpoint(load_manifest(PARITY_DIR / f"{family}.manifest.json"), salt=salt), path)
    return path


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("checkpoints")


@pytest.fixture(scope="session")
def fixture_checkpoint(checkpoint_dir):
    """name -> path of that model's fixture checkpoint (written once per session)."""
    cache = {}

    def get(name: str) -> Path:
        if name not in cache:
            family = FIXTURE_FAMILIES[name]
            salt = str(fixture_npz(family)["salt"])
            cache[name] = write_fixture_checkpoint(family, checkpoint_dir / f"{family}.pt", salt)
        return cache[name]

    return get


def build_quiet(name: str, checkpoint=None):
    import samexport

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", samexport.RandomWeightsWarning)
        return samexport.build_model(name, checkpoint=checkpoint)


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    """One conversion per family that several test modules read: tinyvit and efficientsam_ti to both
    targets, repvit to ONNX, all with the default (parity fill) weights and convert's own checks.
    Returns (folder, {name: manifest})."""
    from samexport.export.convert import ConvertOptions, convert

    out = tmp_path_factory.mktemp("exports")
    manifests = {}
    for name, target in (("tinyvit", "all"), ("repvit", "onnx"), ("efficientsam_ti", "all")):
        manifests[name] = convert(ConvertOptions(encoder=name, target=target, output_dir=out), quiet=True)
    return out, manifests
