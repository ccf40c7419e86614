"""RAP-SAM R50 on this machine: parity with the official outputs, the ONNX deformable-convolution choice,
float16 with and without float32 poolings, conversion (sizes, times, checks), CPU latency rows.

    .venv/bin/python benchmarks/rapsam.py [--out benchmarks/results/linux-x86_64-2core/rapsam.json]
        [--render-only]

Fixture weights (the parity fill) and the fixture classifier; the official outputs come from
../shared/parity/rap_sam_r50.expected.npz. Each step is written to the JSON as soon as it finishes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from samexport.families.rapsam.pipelines import panoptic_segments
from samexport.provenance import machine, versions

RESULTS = Path(__file__).parent / "results" / "linux-x86_64-2core"
PARITY = Path(__file__).resolve().parents[1].parent / "shared" / "parity"
H, W = 480, 640
STEPS = ("parity", "onnx_deformable", "fp16_poolings", "attention_subnormals", "conversions", "bench")


def rel(ours, ref) -> float:
    ref = np.asarray(ref, np.float64)
    return float(np.abs(np.asarray(ours, np.float64) - ref).max() / np.abs(ref).max())


def parity() -> dict:
    """Every comparison of tests/test_rapsam.py, as numbers."""
    sys.path.insert(0, str(PARITY))
    from fill import load_manifest, make_checkpoint

    import samexport

    z = np.load(PARITY / "rap_sam_r50.expected.npz")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rapsam_r50_12e.pth"
        torch.save(make_checkpoint(load_manifest(PARITY / "rap_sam_r50.manifest.json"), salt=""), path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = samexport.build_model("rapsam_r50", checkpoint=path)
    from samexport.checkpoint import random_fill
    from samexport.families.rapsam.family import fill_classifier, install_classifier

    install_classifier(model, fill_classifier(random_fill))
    x = model.preprocess(z["image"])
    rows = {
        "input (exact recipe)": float(
            np.abs(x.reshape(-1).numpy()[z["input_tensor_sample_idx"]] - z["input_tensor_sample"]).max()
        )
    }
    with torch.no_grad():
        backbone = model.backbone(x)
        features = model.neck(backbone)
    rows["backbone C5 (abs)"] = float(
        np.abs(backbone[3].reshape(-1).numpy()[z["backbone_c5_sample_idx"]] - z["backbone_c5_sample"]).max()
    )
    rows["mask features"] = rel(
        features.reshape(-1).numpy()[z["mask_features_sample_idx"]], z["mask_features_sample"]
    )
    for i in range(5):
        kinds = json.loads(str(z[f"case_{i}_kinds_json"]))
        prompts = z[f"case_{i}_prompts_original"]
        points = [p[:2].tolist() for p, k in zip(prompts, kinds) if k == "point"]
        boxes = [p.tolist() for p, k in zip(prompts, kinds) if k == "box"]
        order = [j for j, k in enumerate(kinds) if k == "point"] + [
            j for j, k in enumerate(kinds) if k == "box"
        ]
        logits, iou = model.decode(features, model.prompt_tokens((H, W), points, boxes))
        masks = model.postprocess_masks(logits, (H, W)) > 0
        rows[f"case {i} mask logits"] = rel(logits[0], z[f"case_{i}_mask_logits"][0][order])
        rows[f"case {i} IoU (abs)"] = float(
            np.abs(iou[0].numpy() - z[f"case_{i}_iou_predictions"][0][order]).max()
        )
        rows[f"case {i} mask pixels differing"] = float(
            (masks[0].numpy() != z[f"case_{i}_masks"][order]).mean()
        )
    classes, masks = model.panoptic(features)
    rows["panoptic class logits"] = rel(classes, z["pan_cls_scores"])
    rows["panoptic mask logits"] = rel(
        masks.reshape(-1).numpy()[z["pan_mask_logits_sample_idx"]], z["pan_mask_logits_sample"]
    )
    seg, _ = panoptic_segments(classes, masks, (H, W), model.last_resized_hw)
    rows["panoptic map (eval thresholds) pixels differing"] = float((seg != z["pan_seg"]).mean())
    seg, _ = panoptic_segments(
        classes, masks, (H, W), model.last_resized_hw, object_mask_thr=0.0, iou_thr=0.0
    )
    rows["panoptic map (thresholds 0) pixels differing"] = float((seg != z["pan_supp_seg"]).mean())
    return rows


def onnx_deformable() -> dict:
    """The encoder at 800x1088 exported with ONNX DeformConv (what convert writes) and with the same sampling
    as GridSample: onnxruntime CPU latency (1 warm-up, median of 5) and error vs PyTorch."""
    import onnxruntime as ort

    import samexport
    from samexport.export import onnx_export
    from samexport.families.rapsam.parts import encoder_for_export
    from samexport.modeling import deform_conv
    from samexport.reparam import reparameterize_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = samexport.build_model("rapsam_r50")
    encoder = encoder_for_export(reparameterize_model(model))
    x = model.preprocess(np.load(PARITY / "rap_sam_r50.expected.npz")["image"])
    with torch.no_grad():
        reference = encoder(x).numpy()
    native = deform_conv.ModulatedDeformConv2d.forward
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in ("DeformConv", "GridSample"):
            if variant == "GridSample":
                deform_conv.ModulatedDeformConv2d.forward = lambda self, x, offset, mask: (
                    deform_conv.modulated_deform_conv(x, self.weight, offset, mask, self.padding)
                )
            path = Path(tmp) / f"{variant}.onnx"
            try:
                onnx_export.export(encoder, (x,), path, ["image"], ["maskFeatures"])
            finally:
                deform_conv.ModulatedDeformConv2d.forward = native
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            result = session.run(None, {"image": x.numpy()})[0]
            samples = []
            for _ in range(5):
                start = time.perf_counter()
                session.run(None, {"image": x.numpy()})
                samples.append((time.perf_counter() - start) * 1e3)
            out[variant] = {
                "median_ms": round(float(np.median(samples)), 1),
                "max_rel_error": rel(result, reference),
            }
    return out


def fp16_poolings() -> dict:
    """The panoptic head at 800x1088 in float16: all ops, and with the poolings in float32."""
    import coremltools as ct

    import samexport
    from samexport.export import coreml_export
    from samexport.export.coreml_precision import float32_region
    from samexport.families.rapsam.parts import PanopticHeadForExport
    from samexport.mileval import evaluate, load_program
    from samexport.reparam import reparameterize_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = samexport.build_model("rapsam_r50")
    z = np.load(PARITY / "rap_sam_r50.expected.npz")
    features = model.encode_image(z["image"])
    head = PanopticHeadForExport(reparameterize_model(model))
    with torch.no_grad():
        reference = [t.numpy() for t in head(features)]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, selector in (("all float16", None), ("poolings float32", float32_region())):
            traced = coreml_export.trace(head, (features,))
            mlmodel = coreml_export.convert(
                traced,
                [coreml_export.tensor_input("maskFeatures", tuple(features.shape))],
                ["classLogits", "maskLogits"],
                "fp16",
                "iOS16",
                selector,
            )
            path = Path(tmp) / f"{len(out)}.mlpackage"
            mlmodel.save(str(path))
            result = evaluate(load_program(path), {"maskFeatures": features.numpy()})
            from samexport.export.compare import compare

            out[name] = {
                "fp16_overflows": len(result.fp16_overflows),
                "first_overflow": result.fp16_overflows[0] if result.fp16_overflows else None,
                "fp16_peak": result.fp16_peak,
                **{
                    f"{o} psnr_db": round(compare(result.outputs[o], r)["psnr_db"], 1)
                    for o, r in zip(("classLogits", "maskLogits"), reference)
                },
            }
    del ct
    return out


def attention_subnormals() -> dict:
    """The prompt adaptor's softmax over the 54,400 feature pixels: how much of it lies below float16's
    smallest normal number (6.1e-5), and what the decoder outputs become if those weights are zero (a
    device that flushes float16 subnormals), in PyTorch float32 otherwise."""
    import math

    import torch.nn.functional as F

    import samexport
    from samexport.export.compare import compare
    from samexport.modeling import rapsam_head

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = samexport.build_model("rapsam_r50")
    z = np.load(PARITY / "rap_sam_r50.expected.npz")
    features = model.encode_image(z["image"])
    prompts = model.prompt_tokens((H, W), points=[[203, 197], [487, 171]], boxes=[[291, 283, 613, 469]])
    reference = model.decode(features, prompts)
    native = rapsam_head.MultiheadAttention.forward
    seen = {}

    def flushed(self, query, key, value, isolated=False):
        if isolated or key.shape[1] <= 2**14:
            return native(self, query, key, value, isolated)
        wq, wk, wv = self.in_proj_weight.chunk(3)
        bq, bk, bv = self.in_proj_bias.chunk(3)
        b, n, dim = query.shape
        d = dim // self.heads
        q = F.linear(query, wq, bq).view(b, n, self.heads, d).transpose(1, 2) / math.sqrt(d)
        k = F.linear(key, wk, bk).view(b, -1, self.heads, d).permute(0, 2, 3, 1)
        v = F.linear(value, wv, bv).view(b, -1, self.heads, d).transpose(1, 2)
        weights = torch.matmul(q, k).softmax(-1)
        small = weights < 6.1e-5
        seen.update(
            keys=int(key.shape[1]),
            share=float(small.float().mean()),
            mass=float((weights * small).sum(-1).mean()),
        )
        out = torch.matmul(torch.where(small, torch.zeros_like(weights), weights), v)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, dim))

    rapsam_head.MultiheadAttention.forward = flushed
    try:
        flushed_out = model.decode(features, prompts)
    finally:
        rapsam_head.MultiheadAttention.forward = native
    return {
        "keys": seen["keys"],
        "share_of_weights_below_6.1e-5": seen["share"],
        "their_mass": seen["mass"],
        "flushed maskLogits psnr_db": round(
            compare(flushed_out[0].numpy(), reference[0].numpy())["psnr_db"], 1
        ),
        "flushed iouScores max_abs": compare(flushed_out[1].numpy(), reference[1].numpy())["max_abs"],
    }


def cli(*args: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "samexport.cli", *args], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr)
    return time.perf_counter() - start


def conversions(folder: Path) -> dict:
    """`samexport convert --target all` (fp16 Core ML) and a float32 Core ML export, with their manifests."""
    out = {}
    for label, args in (
        ("all, fp16 Core ML", []),
        ("Core ML fp32", ["--target", "coreml", "--precision", "fp32"]),
    ):
        target = folder / label.replace(" ", "_").replace(",", "")
        seconds = cli(
            "convert",
            "--encoder",
            "rapsam_r50",
            "--target",
            "all",
            *args,
            "--output-dir",
            str(target),
            "--quiet",
        )
        manifest = json.loads(next(target.glob("*.export.json")).read_text())
        worst = {
            f"{t} {part} {output}": {k: r[k] for k in ("psnr_db", "rel", "max_abs")}
            for t, report in manifest["validation"].items()
            for part in ("encoder", "decoder", "panoptic")
            for output, r in report[part]["worst"].items()
        }
        out[label] = {
            "wall_s": round(seconds, 1),
            "timings_s": manifest["timings_s"],
            "files_mb": {
                f["path"]: round(f["bytes"] / 1e6, 1)
                for parts in manifest["files"].values()
                for f in parts.values()
            },
            "worst": worst,
        }
    return out


def cpu_bench(folder: Path, points: str = "1,5") -> dict:
    """`samexport bench --device cpu --encoder rapsam_r50 --points POINTS` into `folder`, its JSON result."""
    out = folder / "bench.json"
    cli(
        "bench",
        "--device",
        "cpu",
        "--encoder",
        "rapsam_r50",
        "--points",
        points,
        "--models-dir",
        str(folder / "models"),
        "--format",
        "json",
        "--output",
        str(out),
    )
    return json.loads(out.read_text())


def render(d: dict) -> str:
    lines = [f"# RAP-SAM R50 on {d['machine']['description']}", "", f"Versions: {d['versions']}", ""]
    lines += [
        "## Parity with the official outputs (fixture weights)",
        "",
        "| comparison | ours vs official |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:.2e} |" for k, v in d["parity"].items()]
    lines += ["", "Logit rows: max |ours - official| / max |official|; (abs): max |ours - official|.", ""]
    lines += [
        "## ONNX deformable convolution (encoder 800x1088, onnxruntime CPU)",
        "",
        "| formulation | median ms | max rel error |",
        "|---|---|---|",
    ]
    lines += [
        f"| {k} | {v['median_ms']} | {v['max_rel_error']:.1e} |" for k, v in d["onnx_deformable"].items()
    ]
    lines += [
        "",
        "## float16 panoptic head (NumPy evaluation of the saved program)",
        "",
        "| precision | fp16 overflows | class PSNR dB | mask PSNR dB | fp16 peak |",
        "|---|---|---|---|---|",
    ]
    for k, v in d["fp16_poolings"].items():
        peak = v["fp16_peak"]
        lines.append(
            f"| {k} | {v['fp16_overflows']} | {v['classLogits psnr_db']} | {v['maskLogits psnr_db']} | "
            f"{peak.get('max_abs', 0):.4g} ({peak.get('type')}) |"
        )
    a = d.get("attention_subnormals")
    if a:
        lines += [
            "",
            "## Prompt attention weights and float16 subnormals (PyTorch)",
            "",
            f"Softmax over {a['keys']} keys: {100 * a['share_of_weights_below_6.1e-5']:.3f}% of the weights "
            f"(holding {100 * a['their_mass']:.2f}% of the mass) are below 6.1e-5. Set to zero (a device "
            f"that flushes float16 subnormals): mask logits {a['flushed maskLogits psnr_db']} dB, IoU off "
            f"by {a['flushed iouScores max_abs']:.3f}. Exports keep this softmax and its matmul in float32.",
        ]
    lines += ["", "## Conversions", ""]
    for label, c in d["conversions"].items():
        lines += [f"### {label}: {c['wall_s']} s wall", "", "| file | MB |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in c["files_mb"].items()]
        lines += ["", "| check (worst case) | PSNR dB | max rel | max abs |", "|---|---|---|---|"]
        lines += [
            f"| {k} | {v['psnr_db']:.1f} | {v['rel']:.1e} | {v['max_abs']:.1e} |"
            for k, v in c["worst"].items()
        ]
        lines += ["", "Steps: " + ", ".join(f"{k} {v:.1f} s" for k, v in c["timings_s"].items()), ""]
    lines += ["## `samexport bench --device cpu --encoder rapsam_r50 --points 1,5`", ""]
    from samexport.bench import report

    lines.append(report.to_markdown(d["bench"]))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=RESULTS / "rapsam.json")
    parser.add_argument("--render-only", action="store_true")
    parser.add_argument("--steps", default=",".join(STEPS), help="steps to (re)measure; the others are kept")
    args = parser.parse_args()
    if not args.render_only:
        document = json.loads(args.out.read_text()) if args.out.exists() else {}
        document.update(machine=machine(), versions=versions())
        torch.set_num_threads(2)
        with tempfile.TemporaryDirectory() as tmp:
            steps = {
                "parity": parity,
                "onnx_deformable": onnx_deformable,
                "fp16_poolings": fp16_poolings,
                "attention_subnormals": attention_subnormals,
                "conversions": lambda: conversions(Path(tmp)),
                "bench": lambda: cpu_bench(Path(tmp)),
            }
            for step in args.steps.split(","):
                fn = steps[step]
                start = time.perf_counter()
                document[step] = fn()
                print(f"{step}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
                args.out.write_text(json.dumps(document, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(render(json.loads(args.out.read_text())))


if __name__ == "__main__":
    main()
