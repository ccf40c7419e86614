"""Helpers every test module shares: paths, the parity fixtures, comparisons and running the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import List

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
# ios_harness's two Swift targets: the platform-neutral core and the Apple layer over it.
SWIFT_CORE = ROOT / "ios_harness/Sources/SAMHarnessCore"
SWIFT_APPLE = ROOT / "ios_harness/Sources/SAMHarnessKit"


def swift_source(name: str) -> str:
    """The text of one SAMHarness source file (e.g. "BenchResult.swift"), in whichever target holds it."""
    (path,) = [p for p in (SWIFT_CORE / name, SWIFT_APPLE / name) if p.exists()]
    return path.read_text()


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


def fixture_npz(family: str):
    return np.load(require_parity_dir() / f"{family}.expected.npz")


def write_fixture_checkpoint(family: str, path: Path, salt: str = "") -> Path:
    """The official checkpoint layout filled by the fixtures' rule, saved like the official file."""
    import torch

    require_parity_dir()
    from fill import load_manifest, make_checkpoint

    torch.save(make_checkpoint(load_manifest(PARITY_DIR / f"{family}.manifest.json"), salt=salt), path)
    return path


def build_quiet(name: str, checkpoint=None):
    import samexport

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", samexport.RandomWeightsWarning)
        return samexport.build_model(name, checkpoint=checkpoint)


def write_rapsam_fixture_files(folder: Path) -> tuple:
    """RAP-SAM's fixture fill saved as the official files: mmengine's {"state_dict": ...} checkpoint and the
    (133, 17, 768) classifier, L2-normalised. Returns (checkpoint, classifier)."""
    import torch

    require_parity_dir()
    from fill import fill_tensor, load_manifest, make_checkpoint

    z = fixture_npz("rap_sam_r50")
    salt = str(z["salt"])
    checkpoint = make_checkpoint(load_manifest(require_parity_dir() / "rap_sam_r50.manifest.json"), salt=salt)
    torch.save(checkpoint, folder / "rapsam_r50_12e.pth")
    cls = torch.as_tensor(
        np.asarray(fill_tensor(str(z["ov_classifier_fill_key"]), [133, 17, 768], "float32", salt=salt))
    )
    torch.save(cls / cls.norm(p=2, dim=-1, keepdim=True), folder / "classifier.pth")
    return folder / "rapsam_r50_12e.pth", folder / "classifier.pth"


def rel_err(actual, expected) -> float:
    """max |actual - expected| / max |expected| (tensors or arrays)."""
    a = np.asarray(actual.detach() if hasattr(actual, "detach") else actual, dtype=np.float64)
    e = np.asarray(expected.detach() if hasattr(expected, "detach") else expected, dtype=np.float64)
    return float(np.abs(a - e).max() / np.abs(e).max())


def run_cli(*args: str, timeout: float = 900, env=None) -> subprocess.CompletedProcess:
    """`samexport ARGS` in a child process (for what needs a real process: signals, exit codes, imports)."""
    return subprocess.run(
        [sys.executable, "-m", "samexport.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def start_convert_in_background(out: Path) -> subprocess.Popen:
    """`samexport convert --encoder tinyvit --target onnx` started in a child process, returned once its work
    folder exists in `out` (so that it can be interrupted mid-run)."""
    import time

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "samexport.cli",
            "convert",
            "--encoder",
            "tinyvit",
            "--target",
            "onnx",
            "--output-dir",
            str(out),
            "--quiet",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not list(Path(out).glob(".samexport-*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, "conversion ended before it could be interrupted"
    return proc


def run_bench(*args: str) -> subprocess.CompletedProcess:
    """`samexport bench ARGS` in a child process."""
    return run_cli("bench", *args)


class Invocation:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.returncode, self.stdout, self.stderr = code, out, err


def invoke(capsys, *args: str) -> Invocation:
    """`samexport ARGS` in this process (option checks, errors): exit status, stdout, stderr."""
    from samexport.cli import run

    capsys.readouterr()
    code = run(list(args))
    captured = capsys.readouterr()
    return Invocation(code, captured.out, captured.err)


def one_line_error(result, code: int = 2) -> str:
    """Assert exit status `code` and exactly one `error:` line, the last on stderr (progress lines may come
    before it); return that line."""
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error")]
    assert result.returncode == code, (result.returncode, result.stderr)
    assert len(errors) == 1 and lines[-1] == errors[0] and lines[-1].startswith("error: "), result.stderr
    return lines[-1]


def assert_constexpr_ops_match_coremltools(program) -> None:
    """Every weight-decompression op of a read-back program, evaluated by mileval, equals coremltools'
    own materialisation of it (compared at fp16, the stored width); the program must have at least one."""
    from samexport.mileval.registry import OPS

    constants = program.constants()
    decompressed = [op for op in program.operations if op.op_type.startswith("constexpr_")]
    assert decompressed
    for op in decompressed:
        ours = OPS[op.op_type](**{k: constants[v.name] for k, v in op.inputs.items()})
        theirs = np.asarray(op.materialized_val_inference(), np.float32)
        np.testing.assert_array_equal(np.asarray(ours, np.float16), theirs.astype(np.float16))


__all__: List[str] = [
    "FIXTURE_FAMILIES",
    "PARITY_DIR",
    "ROOT",
    "assert_constexpr_ops_match_coremltools",
    "build_quiet",
    "fixture_npz",
    "fake_result",
    "invoke",
    "one_line_error",
    "rel_err",
    "require_parity_dir",
    "run_cli",
    "write_fixture_checkpoint",
]


def fake_result(device="CPU (onnxruntime), test CPU"):
    """A bench result of three rows (two ok, one oom) as `bench --format json` writes it."""
    from samexport.bench import report
    from samexport.bench.stats import summarize

    def row(title, family, part, points, status, median=None, column=None):
        r = {
            "model": title.lower(),
            "title": title,
            "family": family,
            "part": part,
            "column": column,
            "points": points,
            "tokens": None if points is None else points + 1,
            "precision": "fp32",
            "compute_unit": "cpu",
            "status": status,
            "gmacs": 10.0,
            "compute_floor_ms": 100.0,
            "peak_rss_mb": 500.0,
        }
        if status == "ok":
            r.update(
                stats=summarize([median, median * 1.1, median * 0.9]),
                samples_ms=[median, median * 1.1, median * 0.9],
                load_ms=50.0,
                first_ms=median * 2,
            )
        else:
            r["error"] = "Failed to allocate memory"
        return r

    return {
        "schema": report.SCHEMA,
        "device": {"label": device},
        "machine": {"description": "test machine"},
        "options": {"target": "onnx", "runs": 3},
        "rows": [
            row("RepViT-SAM", "sam", "encoder", None, "ok", 1600.0, "RepViT-SAM"),
            row("RepViT-SAM", "sam", "decoder", 1, "ok", 50.0, "SAM decoder"),
            row("SAM ViT-B", "sam", "encoder", None, "oom", column="SAM ViT-B"),
        ],
    }


# -- everything mode against the official generator's fixture ---------------------------------------
def official_run(z, run: str):
    return json.loads(str(z["runs_json"]))[run]


def assert_same_records(records, z, run: str) -> None:
    h, w = (int(v) for v in z["original_size"])
    ref = np.unpackbits(z[f"{run}_segmentation_packed"], axis=-1, count=h * w).reshape(-1, h, w).astype(bool)
    assert len(records) == len(ref)
    for i, record in enumerate(records):
        assert record["bbox"] == z[f"{run}_bbox"][i].tolist()
        assert record["crop_box"] == z[f"{run}_crop_box"][i].tolist()
        # a pixel whose upscaled logit lies within ~1e-6 of 0 may flip (README: <= 0.05% of pixels)
        assert abs(record["area"] - z[f"{run}_area"][i]) <= 5e-4 * h * w
        np.testing.assert_allclose(record["point_coords"][0], z[f"{run}_point_coords"][i])
        assert abs(record["predicted_iou"] - z[f"{run}_predicted_iou"][i]) < 5e-5
        assert abs(record["stability_score"] - z[f"{run}_stability_score"][i]) < 1e-4
        assert (record["segmentation"] != ref[i]).mean() <= 5e-4


def assert_same_counts(generator, meta) -> None:
    counts = generator.stage_counts
    for stage, expected in meta["stage_counts"].items():
        assert counts[stage] == expected, stage
    for ours, theirs in zip(counts["per_crop"], meta["per_crop"], strict=True):
        assert {k: ours[k] for k in theirs if k != "n_batches"} == {
            k: v for k, v in theirs.items() if k != "n_batches"
        }


def toy_predictor_against_the_model(manifest: Path, target: str):
    """The toy export's predictor (`runtimes.ExportPredictor` on `target`) and the toy model on five prompt
    sets of one click (one call of 4 and one of 1): (masks, iou) of each, and the predictor."""
    import torch

    from samexport import build_model
    from samexport.export.runtimes import ExportPredictor
    from samexport.samples import validation_image

    predictor = ExportPredictor(manifest, target)
    model = build_model("toy3")
    image = validation_image()
    predictor.set_image(image)
    coords = torch.tensor([[[300.0, 200.0], [0.0, 0.0], [0.0, 0.0]]] * 5)
    labels = torch.tensor([[1.0, -1.0, -1.0]] * 5)
    masks, iou = predictor.predict(coords, labels)
    with torch.no_grad():
        expected, expected_iou = model.decode(model.image_encoder(model.preprocess(image)), coords, labels)
    return (masks.numpy(), iou.numpy()), (expected.numpy(), expected_iou.numpy()), predictor


def target_params():
    """Every registered export target as a pytest parameter carrying its target's marker (conftest)."""
    import pytest

    from samexport.export.target import targets

    return [pytest.param(name, marks=getattr(pytest.mark, name), id=name) for name in targets()]


def assert_rapsam_pipelines_on_the_export_equal_pytorchs(manifest: Path, target: str) -> None:
    """RAP-SAM's pipelines over an export (a float32 CPU runtime) against the same pipelines over PyTorch's
    modules at the export's input size, on a 4-frame 48x64 clip of the parity scene: the video's tubes and
    matching, per frame the same (id, query, class), class scores and scores within 1e-3, masks IoU >= 0.99;
    one mask per prompt (IoU >= 0.99, raw IoU within 1e-3) and the panoptic map (<= 1% of pixels)."""
    import cv2
    import numpy as np

    from samexport.amg import decode_rle
    from samexport.export.runtimes import open_session
    from samexport.families.rapsam.pipelines import PanopticPipeline, PromptPipeline, VideoPipeline
    from samexport.modeling.rapsam import RapSam
    from samexport.zoo import torch_session

    scene = cv2.cvtColor(cv2.imread(str(require_parity_dir() / "scene.png")), cv2.COLOR_BGR2RGB)
    frames = [np.roll(cv2.resize(scene, (64, 48)), (2 * t, 3 * t), axis=(0, 1)) for t in range(4)]
    with open_session(manifest, target) as session:
        reference, _ = torch_session("rapsam", input_size=session.input_size)
        ours, expected = VideoPipeline(session)(frames), VideoPipeline(reference)(frames)
        # 3 prompts: a count every export of the tests takes (`--points 1,3`)
        prompts = RapSam.prompt_tokens((48, 64), points=[[20, 30], [50, 12]], boxes=[[5, 5, 40, 30]])
        masks, iou = PromptPipeline(session)(frames[0], prompts)
        expected_masks, expected_iou = PromptPipeline(reference)(frames[0], prompts)
        seg, _ = PanopticPipeline(session)(frames[0], object_mask_thr=0.0, iou_thr=0.0)
        expected_seg, _ = PanopticPipeline(reference)(frames[0], object_mask_thr=0.0, iou_thr=0.0)
    assert masks.shape == (3, 48, 64) and np.abs(iou - expected_iou).max() <= 1e-3
    assert all((m & e).sum() / max((m | e).sum(), 1) >= 0.99 for m, e in zip(masks, expected_masks))
    assert (seg != expected_seg).mean() <= 0.01
    assert [t["end"] for t in ours.tubes] == [t["end"] for t in expected.tubes] == [3, 4]
    for a, b in zip(ours.tubes, expected.tubes):
        np.testing.assert_array_equal(a["order"], b["order"])
    for frame_a, frame_b in zip(ours.frames, expected.frames, strict=True):
        for a, b in zip(frame_a, frame_b, strict=True):
            assert (a["id"], a["query"], a["label"]) == (b["id"], b["query"], b["label"])
            assert abs(a["class_score"] - b["class_score"]) <= 1e-3 and abs(a["score"] - b["score"]) <= 1e-3
            ma, mb = decode_rle(a["rle"]), decode_rle(b["rle"])
            union = (ma | mb).sum()
            assert union == 0 or (ma & mb).sum() / union >= 0.99


def write_moving_clip(path: Path, frames: int, size=(96, 128)) -> Path:
    """An MPEG-4 clip of the parity scene moving, `frames` frames at (h, w) `size`."""
    import cv2
    import numpy as np

    scene = cv2.resize(cv2.imread(str(require_parity_dir() / "scene.png")), size[::-1])
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, size[::-1])
    for t in range(frames):
        writer.write(np.roll(scene, (2 * t, 3 * t), axis=(0, 1)))
    writer.release()
    return path
