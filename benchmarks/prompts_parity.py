"""How close batched decoding and everything mode come to the official code, in numbers.

For each fixture family (`../shared/parity/*.batched.npz`, `*.amg.npz`, fixture weights):
- batched decoding of the three prompt groups from the official image embedding: PyTorch, and for
  MobileSAM also the exported ONNX decoder (onnxruntime), vs the official `predict_torch` arrays;
- everything mode (`MaskGenerator`) for the three official runs: masks out vs official, the largest
  IoU / stability-score differences, the share of mask pixels that differ, exact boxes and points.
  `base`/`nms1` decode the official embedding (decoder level); `crop` runs our encoder on every crop.

    .venv/bin/python benchmarks/prompts_parity.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_everything import StoredEmbedding, official_run  # noqa: E402

from helpers import PARITY_DIR, build_quiet, write_fixture_checkpoint  # noqa: E402
from samexport.export.convert import convert  # noqa: E402
from samexport.export.options import ConvertOptions, artifact_names  # noqa: E402
from samexport.export.runtimes import ExportPredictor  # noqa: E402
from samexport.families.registry import get_spec  # noqa: E402
from samexport.fsutil import atomic_write_text  # noqa: E402
from samexport.mask_generator import MaskGenerator  # noqa: E402
from samexport.provenance import machine, versions  # noqa: E402

FAMILIES = {"mobile_sam": "tinyvit", "sam_vit_b": "sam_vit_b"}


def batched_errors(decode, z, embedding) -> dict:
    out = {}
    for group in ("g1", "g2", "g3"):
        masks, iou = decode(
            embedding,
            torch.from_numpy(z[f"{group}_coords_model"]),
            torch.from_numpy(z[f"{group}_labels_model"]),
        )
        masks, iou = masks.numpy(), iou.numpy()
        out[group] = {
            "B": int(len(masks)),
            "logits_max_abs": float(
                max(
                    np.abs(masks[:, 1:] - z[f"{group}_multi_low_res_masks"]).max(),
                    np.abs(masks[:, :1] - z[f"{group}_single_low_res_masks"]).max(),
                )
            ),
            "iou_max_abs": float(
                max(
                    np.abs(iou[:, 1:] - z[f"{group}_multi_iou_predictions"]).max(),
                    np.abs(iou[:, :1] - z[f"{group}_single_iou_predictions"]).max(),
                )
            ),
        }
    return out


def amg_errors(predictor, z, run: str) -> dict:
    meta = official_run(z, run)
    records = MaskGenerator(predictor, **meta["kwargs"]).generate(z["image"])
    h, w = (int(v) for v in z["original_size"])
    ref = np.unpackbits(z[f"{run}_segmentation_packed"], axis=-1, count=h * w).reshape(-1, h, w).astype(bool)
    same_count = len(records) == len(ref)
    pairs = list(zip(records, range(len(ref))))
    return {
        "masks": len(records),
        "official_masks": int(len(ref)),
        "same_order_boxes_points_crops": same_count
        and all(
            r["bbox"] == z[f"{run}_bbox"][i].tolist()
            and r["crop_box"] == z[f"{run}_crop_box"][i].tolist()
            and np.allclose(r["point_coords"][0], z[f"{run}_point_coords"][i])
            for r, i in pairs
        ),
        "iou_max_abs": max(
            (abs(r["predicted_iou"] - float(z[f"{run}_predicted_iou"][i])) for r, i in pairs), default=0.0
        ),
        "stability_max_abs": max(
            (abs(r["stability_score"] - float(z[f"{run}_stability_score"][i])) for r, i in pairs), default=0.0
        ),
        "pixels_differing_max_fraction": max(
            (float((r["segmentation"] != ref[i]).mean()) for r, i in pairs), default=0.0
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/linux-x86_64-2core"))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    result = {"machine": machine(), "versions": versions(), "families": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for family, name in FAMILIES.items():
            z_batched = np.load(PARITY_DIR / f"{family}.batched.npz")
            z_amg = np.load(PARITY_DIR / f"{family}.amg.npz")
            model = build_quiet(name, write_fixture_checkpoint(family, Path(tmp) / f"{family}.pt"))
            embedding = torch.from_numpy(z_amg["image_embeddings"])
            entry = {"batched_torch": batched_errors(model.decode, z_batched, embedding)}
            if name == "tinyvit":  # the default weights of tinyvit are the fixture fill
                options = ConvertOptions(encoder=name, target="onnx", output_dir=Path(tmp) / "onnx")
                convert(options, quiet=True)
                manifest = Path(tmp) / "onnx" / artifact_names(get_spec(name), options)[("manifest", "")]
                onnx = ExportPredictor(manifest, "onnx")
                entry["batched_onnx"] = batched_errors(onnx.decode, z_batched, embedding)
                entry["everything_onnx_end_to_end"] = {
                    run: amg_errors(onnx, z_amg, run) for run in ("nms1", "base")
                }
            stored = StoredEmbedding(model, z_amg)
            entry["everything_torch"] = {
                run: amg_errors(stored, z_amg, run) for run in ("base", "nms1", "crop")
            }
            result["families"][family] = entry
            print(json.dumps({family: entry}, indent=1), flush=True)
    path = args.out / "prompts_parity.json"
    atomic_write_text(path, json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
