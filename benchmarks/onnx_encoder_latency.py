"""ONNX Runtime CPU latency of the RepViT-SAM encoder: an official-style export vs samexport's.

Official style: the unfused model with the official module formulations (SE via x.mean,
LayerNorm2d via mean/pow/sqrt), torch.jit.trace, torch.onnx.export at opset 17, no
simplification, a default onnxruntime session. Each samexport step is added one at a time so the
table shows what each one buys (and what onnxsim costs at opset 17, where it breaks
onnxruntime's GELU fusion). Same weights, same input, one process; variants are timed in interleaved rounds
so drift on the machine hits all of them alike.

    .venv/bin/python benchmarks/onnx_encoder_latency.py [--encoder repvit] [--rounds 5] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

import samexport
from samexport.export import onnx_export
from samexport.families import EncoderForExport
from samexport.modeling.common import LayerNorm2d
from samexport.modeling.repvit import SqueezeExcite
from samexport.provenance import machine, versions
from samexport.samples import validation_image


class OfficialSqueezeExcite(nn.Module):
    """timm's SE as the official code writes it (x.mean, exported as ReduceMean)."""

    def __init__(self, se: SqueezeExcite) -> None:
        super().__init__()
        self.fc1, self.fc2 = se.fc1, se.fc2

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))


class OfficialLayerNorm2d(nn.Module):
    """segment-anything's LayerNorm2d: mean, (x - u)^2 mean, sqrt."""

    def __init__(self, norm: LayerNorm2d) -> None:
        super().__init__()
        self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


def as_official(module: nn.Module) -> nn.Module:
    """A copy with samexport's export-friendly rewrites replaced by the official formulations."""
    module = copy.deepcopy(module)
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, SqueezeExcite):
                setattr(parent, name, OfficialSqueezeExcite(child))
            elif isinstance(child, LayerNorm2d):
                setattr(parent, name, OfficialLayerNorm2d(child))
    return module


def official_style_export(model, path: Path) -> None:
    traced = torch.jit.trace(as_official(model.image_encoder).eval(), torch.zeros(1, 3, 1024, 1024))
    with torch.no_grad():
        torch.onnx.export(
            traced,
            (torch.zeros(1, 3, 1024, 1024),),
            str(path),
            input_names=["image"],
            output_names=["imageEmbeddings"],
            opset_version=17,
            dynamo=False,
        )


def make_session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def export_at(module, path: Path, opset: int, simplified: bool) -> None:
    with torch.no_grad():
        torch.onnx.export(
            module.eval(),
            (torch.zeros(1, 3, 1024, 1024),),
            str(path),
            input_names=["image"],
            output_names=["imageEmbeddings"],
            opset_version=opset,
            dynamo=False,
        )
    if simplified:
        onnx_export.simplify(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="repvit")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = samexport.build_model(args.encoder)
        fused = samexport.reparameterize_model(model)
    x = model.preprocess(validation_image()).numpy()
    work = Path(tempfile.mkdtemp(prefix="onnx-bench-"))
    official = work / "official.onnx"
    official_style_export(model, official)
    encoder = EncoderForExport(fused.image_encoder)
    paths = {
        "fused17": work / "fused17.onnx",
        "fused17sim": work / "fused17sim.onnx",
        "fused20sim": work / "fused20sim.onnx",
    }
    export_at(encoder, paths["fused17"], 17, simplified=False)
    export_at(encoder, paths["fused17sim"], 17, simplified=True)
    export_at(encoder, paths["fused20sim"], onnx_export.OPSET, simplified=True)

    variants = {
        "official-style (unfused, trace, opset 17, not simplified)": make_session(official),
        "+ reparameterized (fused), opset 17": make_session(paths["fused17"]),
        "(+ onnxsim at opset 17: breaks ORT's GELU fusion)": make_session(paths["fused17sim"]),
        f"+ opset {onnx_export.OPSET} native Gelu + onnxsim (samexport convert)": make_session(
            paths["fused20sim"]
        ),
    }
    reference = None
    for name, sess in variants.items():
        out = sess.run(None, {"image": x})[0]  # warm-up and parity
        reference = out if reference is None else reference
        err = float(np.abs(out - reference).max() / np.abs(reference).max())
        print(f"{name}: max error vs official-style {err:.1e}", file=sys.stderr)
    samples = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, sess in variants.items():
            start = time.perf_counter()
            sess.run(None, {"image": x})
            samples[name].append(time.perf_counter() - start)
    base = statistics.median(samples[next(iter(variants))])
    rows = []
    for name, values in samples.items():
        median = statistics.median(values)
        rows.append(
            {
                "variant": name,
                "median_s": round(median, 4),
                "min_s": round(min(values), 4),
                "ratio_vs_official": round(median / base, 3),
                "samples_s": [round(v, 4) for v in values],
            }
        )
    result = {
        "encoder": args.encoder,
        "machine": machine(),
        "versions": versions(),
        "rounds": args.rounds,
        "rows": rows,
    }
    print("| variant | median s | min s | vs official |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['median_s']:.3f} | {r['min_s']:.3f} | {r['ratio_vs_official']:.2f}x |")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
