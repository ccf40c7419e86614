"""The float16 verdict over other weights: every SAM-style family's decoder and encoder on the simulated
float16 device (`samexport.export.float16_device`, the check convert runs for float16 files), with the
shared parity fill and fills of other salts (`../shared/parity/fill.py`), and with the part's float input
scaled 2x and 4x (larger activations: float16's range and its accumulators). Each row: the worst PSNR of
each output over the part's validation cases against the same module in float32, and its margin over the
35 dB floor. Needs ../shared/parity.

    .venv/bin/python benchmarks/float16_robustness.py  # -> results/linux-x86_64-2core/float16_robustness.*
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from samexport import RandomWeightsWarning, build_model
from samexport.export.compare import compare
from samexport.export.float16_device import simulate
from samexport.export.options import ConvertOptions
from samexport.export.quality import FP16_MIN_PSNR_DB
from samexport.families.registry import get_spec
from samexport.fsutil import atomic_write_text
from samexport.parts import PartForm
from samexport.provenance import machine, versions
from samexport.reparam import reparameterize_model

PARITY = Path(__file__).resolve().parents[2] / "shared" / "parity"
OUT = Path(__file__).parent / "results" / "linux-x86_64-2core"
FIXTURES = {"tinyvit": "mobile_sam", "repvit": "repvit_sam", "efficientsam_ti": "efficient_sam_vitt"}
SALTS = ("", "robustness-1", "robustness-2")  # "": the shared fill (its fixture's own salt)
SCALES = (1.0, 2.0, 4.0)
SCALED_INPUT = {"decoder": "imageEmbeddings", "encoder": "image"}


def parts_with_fill(name: str, salt: str, folder: Path):
    sys.path.insert(0, str(PARITY))
    from fill import load_manifest, make_checkpoint

    fixture = FIXTURES[name]
    if salt == "":
        salt = str(np.load(PARITY / f"{fixture}.expected.npz")["salt"])
    checkpoint = folder / f"{fixture}-{salt or 'shared'}.pt"
    torch.save(make_checkpoint(load_manifest(PARITY / f"{fixture}.manifest.json"), salt=salt), checkpoint)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        model = build_model(name, checkpoint=checkpoint)
    family = get_spec(name).family
    shapes = family.export_shapes(ConvertOptions(encoder=name, target="litert"))
    return family.export_parts(
        model,
        reparameterize_model(model),
        shapes,
        PartForm(False, False, False),
        family.reference(model, shapes),
    )


def worst_on_device(part, scale: float, cases: int) -> dict:
    """Worst PSNR per output over the part's first `cases` cases, with its scaled input, against the same
    module in float32 on the same feeds."""
    module = part.module().eval()
    names = part.interface.input_names
    worst: dict = {}
    start = time.perf_counter()
    for case, feeds, _ in part.cases(None)[:cases]:
        feeds = dict(feeds)
        feeds[SCALED_INPUT[part.name]] = feeds[SCALED_INPUT[part.name]] * np.float32(scale)
        with torch.no_grad():
            reference = module(*(torch.from_numpy(np.asarray(feeds[n], np.float32)) for n in names))
        reference = reference if isinstance(reference, tuple) else (reference,)
        simulated = simulate(module, feeds, names)
        for output, ref, got in zip(part.interface.output_names, reference, simulated):
            psnr = compare(got, ref.numpy())["psnr_db"]
            if output not in worst or psnr < worst[output]["psnr_db"]:
                worst[output] = {"psnr_db": round(psnr, 1), "case": case}
    return {
        "worst": worst,
        "cases": min(cases, len(part.cases(None))),
        "seconds": round(time.perf_counter() - start, 1),
    }


def plan():
    """(model, salt, part, scale, cases): decoders everywhere; encoders for every salt at scale 1 and the
    shared fill scaled (one case each: an encoder's simulation takes 0.5 to 2 minutes here)."""
    for name in FIXTURES:
        for salt in SALTS:
            for scale in SCALES:
                yield name, salt, "decoder", scale, 12
            yield name, salt, "encoder", 1.0, 1
        for scale in SCALES[1:]:
            yield name, "", "encoder", scale, 1


def markdown(result: dict) -> str:
    lines = [
        "# Float16 device verdicts over other weights",
        "",
        f"{result['machine']['description']}; torch {result['versions']['torch']}. The simulated float16 "
        "device of `samexport.export.float16_device` (float16 values, products accumulated in float16); "
        f"worst PSNR over the validation cases against the module in float32; floor {FP16_MIN_PSNR_DB} dB. "
        "Salt '' is the shared parity fill. Produced by `benchmarks/float16_robustness.py`.",
        "",
        "| model | part | salt | input scale | worst PSNR per output (dB) | margin over the floor (dB) |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        worst = row["worst"]
        psnr = ", ".join(f"{o} {w['psnr_db']}" for o, w in worst.items())
        margin = min(w["psnr_db"] for w in worst.values()) - FP16_MIN_PSNR_DB
        lines.append(
            f"| {row['model']} | {row['part']} | {row['salt'] or 'shared'} | {row['scale']:g}x | {psnr} | "
            f"{margin:+.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    json_path, md_path = OUT / "float16_robustness.json", OUT / "float16_robustness.md"
    result = {"machine": machine(), "versions": versions(), "floor_db": FP16_MIN_PSNR_DB, "rows": []}
    parts = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, salt, part, scale, cases in plan():
            if (name, salt) not in parts:
                parts = {(name, salt): parts_with_fill(name, salt, Path(folder))}
            row = {"model": name, "salt": salt, "part": part, "scale": scale}
            row.update(worst_on_device(parts[(name, salt)][part], scale, cases))
            result["rows"].append(row)
            print(json.dumps(row), flush=True)
            atomic_write_text(json_path, json.dumps(result, indent=2) + "\n")
            atomic_write_text(md_path, markdown(result))


if __name__ == "__main__":
    main()
