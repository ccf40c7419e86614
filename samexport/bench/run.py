"""Benchmark orchestration: find (or convert) the exports, measure each part, write as you go."""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import PlatformError, SamExportError, UsageError
from ..export.convert import ConvertOptions, artifact_names, convert, versions
from ..registry import get_spec, list_models
from . import devices, harness, report
from .runner import run_part

DEVICES = ("cpu", "cuda", "m1", "iphone")


@dataclass
class BenchOptions:
    device: str = "cpu"
    encoders: Tuple[str, ...] = ("repvit",)
    target: str = "onnx"
    compute_units: Tuple[str, ...] = ("all",)
    points: Tuple[int, ...] = (1, 5)
    runs: int = 5
    warmup: int = 1
    memory_limit: Optional[int] = None
    as_device: Optional[str] = None
    models_dir: Path = Path("models")
    compress: str = "none"
    output: Optional[Path] = None
    threads: int = 0
    notes: List[str] = field(default_factory=list)
    # ios_harness: always for iphone; for m1 with --via-harness
    via_harness: bool = False
    harness_dir: Optional[Path] = None
    team: Optional[str] = None
    prepare_only: bool = False
    harness_timeout_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise UsageError(f"unknown --device {self.device!r}; choose one of: {', '.join(DEVICES)}")
        if self.runs < 1 or self.warmup < 0:
            raise UsageError("--runs must be at least 1 and --warmup at least 0")
        if not self.points or any(p < 1 for p in self.points):
            raise UsageError("--points must be positive point counts")
        if self.as_device and self.memory_limit is None:
            self.memory_limit = devices.budget_bytes(self.as_device)
        if self.device in ("cpu", "cuda") and self.target != "onnx":
            raise UsageError(f"--device {self.device} runs ONNX exports; use --target onnx (Core ML needs "
                             "--device m1 on a Mac)")
        if self.device in ("m1", "iphone"):
            self.target = "coreml"
        from .worker import COMPUTE_UNITS

        bad = [c for c in self.compute_units if c not in COMPUTE_UNITS]
        if bad:
            raise UsageError(f"unknown --compute-units {bad[0]!r}; choose from: {', '.join(COMPUTE_UNITS)}")
        if self.compress not in ("none", "int8"):
            raise UsageError("bench measures --compress none or int8 exports")
        if self.via_harness and self.device not in ("m1", "iphone"):
            raise UsageError("--via-harness runs the ios_harness app: use it with --device m1 (--device iphone "
                             "always does)")
        if self.device == "iphone":
            self.via_harness = True
        if self.prepare_only and not self.via_harness:
            raise UsageError("--prepare-only stages packages for ios_harness: use it with --device iphone or "
                             "--device m1 --via-harness")
        if self.via_harness and self.memory_limit is not None:
            raise UsageError("--memory-limit/--as-device emulate a budget on this machine; on a device through "
                             "ios_harness the device's own limit applies (out-of-memory kills become oom rows)")


def check_platform(options: BenchOptions) -> None:
    """Fail fast, with exit code 2, where the chosen device cannot be measured from here."""
    if options.prepare_only:
        return
    if options.via_harness:
        harness.require_tools(options.device)
    if options.device == "m1":
        if not (sys.platform == "darwin" and platform.machine() == "arm64"):
            raise PlatformError("--device m1 needs macOS on Apple silicon (Core ML); on this machine use "
                                "--device cpu (onnxruntime)")
    elif options.device == "cuda":
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise PlatformError("--device cuda needs onnxruntime-gpu with a CUDA device; this onnxruntime offers "
                                f"{', '.join(ort.get_available_providers())}; use --device cpu")


def cpu_model() -> str:
    if sys.platform == "darwin":
        out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True)
        return out.stdout.strip() or platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def thermal_state() -> Optional[str]:
    if sys.platform == "darwin":
        out = subprocess.run(["pmset", "-g", "therm"], capture_output=True, text=True)
        return " ".join(out.stdout.split()) or None
    return None


def measure_cpu_peak_gflops(seconds: float = 1.0) -> float:
    """Best float32 GEMM rate of this machine (numpy BLAS, all cores), for the compute floor."""
    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        a @ a
        best = max(best, 2 * 2048 ** 3 / (time.perf_counter() - start) / 1e9)
    return best


def machine(options: BenchOptions) -> Dict:
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None
    desc = f"{cpu_model()}, {os.cpu_count()} cores, {ram / 1024 ** 3:.0f} GiB RAM, {platform.platform()}"
    return {"description": desc, "cpu": cpu_model(), "cores": os.cpu_count(),
            "ram_gib": round(ram / 1024 ** 3, 1) if ram else None, "os": platform.platform(),
            "thermal_state": thermal_state() or "not reported by this OS"}


class Bench:
    def __init__(self, options: BenchOptions, quiet: bool = False) -> None:
        from rich.console import Console

        self.options = options
        self.console = Console(stderr=True, quiet=quiet, soft_wrap=True)
        self.result: Dict = {}
        self._artifacts: Dict = {}

    def say(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def artifacts(self, name: str):
        """The exports to measure, converted first when missing; the conversion error if that fails."""
        if name not in self._artifacts:
            try:
                self._artifacts[name] = self._find_or_convert(name)
            except SamExportError as e:
                self._artifacts[name] = e
        return self._artifacts[name]

    def _find_or_convert(self, name: str) -> Dict[str, Path]:
        """Paths of the encoder, decoder and manifest in --models-dir."""
        spec, target = get_spec(name), self.options.target
        convert_options = ConvertOptions(encoder=name, target=target, output_dir=self.options.models_dir,
                                         compress=self.options.compress)
        names = artifact_names(spec, convert_options)
        paths = {part: self.options.models_dir / names[f"{target}_{part}"] for part in ("encoder", "decoder")}
        if not all(p.exists() for p in paths.values()):
            self.say(f"{spec.title}: no {target} export in {self.options.models_dir}, converting first")
            convert_options.force = True
            convert(convert_options, quiet=True)
        return {**paths, "manifest": self.options.models_dir / names["manifest"]}

    def device_info(self) -> Dict:
        options = self.options
        info: Dict = {"kind": options.device}
        if options.device == "cpu":
            info["label"] = f"CPU (onnxruntime), {cpu_model()}"
            with self.console.status("measuring this machine's float32 GEMM peak"):
                info["peak_gflops"] = round(measure_cpu_peak_gflops(), 1)
            info["peak_source"] = "float32 GEMM 2048x2048 with numpy on all cores, best of ~1 s"
        elif options.device == "m1":
            info["label"] = f"Core ML, {cpu_model()}"
            profile = next((d for d in devices.load()["devices"].values()
                            if d["kind"] == "mac" and d["chip"] in cpu_model()), None)
            if profile:
                info["peak_gflops"] = profile["neural_engine_tops"] * 1e3
                info["peak_source"] = f"{profile['chip']} Neural Engine {profile['neural_engine_tops']} TOPS (Apple)"
        else:
            info["label"] = options.device
        if options.as_device:
            profile = devices.profile(options.as_device)
            info["memory_profile"] = profile
            info["label"] += f", {profile['name']} memory budget"
        return info

    def run(self) -> Optional[Dict]:
        """The bench result (None with --prepare-only, which only stages the harness)."""
        options = self.options
        check_platform(options)
        precision = ("int8" if options.compress == "int8" else "fp32") if options.target == "onnx" else "fp16"
        units = options.compute_units if options.target == "coreml" else (options.device,)
        jobs = []
        for name in options.encoders:
            for unit in units:
                jobs.append((name, "encoder", None, unit))
                jobs += [(name, "decoder", points, unit) for points in options.points]
        if options.via_harness:
            return self.run_harness(jobs, precision)
        self.result = {
            "schema": report.SCHEMA,
            "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(options),
            "versions": versions(),
            "device": self.device_info(),
            "options": {"target": options.target, "runs": options.runs, "warmup": options.warmup,
                        "points": list(options.points), "compress": options.compress,
                        "memory_limit_mb": round(options.memory_limit / 1024 ** 2) if options.memory_limit else None,
                        "as_device": options.as_device, "budget_rule": devices.load()["budget_rule"]},
            "rows": [],
        }
        peak = self.result["device"].get("peak_gflops")
        from rich.progress import Progress

        with Progress(console=self.console, transient=True) as progress:
            task = progress.add_task("benchmark", total=len(jobs))
            for name, part, points, unit in jobs:
                spec = get_spec(name)
                progress.update(task, description=f"{spec.title} {part}" + (f" {points} pt" if points else ""))
                row = self.measure(name, part, points, unit, precision, peak)
                self.result["rows"].append(row)
                self.write_progress()
                progress.advance(task)
                self.say(f"  {spec.title} {part}{f' ({points} pt)' if points else ''}: {report.cell(row)}"
                         + (" ms" if row["status"] == "ok" else f" ({row.get('error', '')[:160]})"))
        return self.result

    def run_harness(self, jobs, precision: str) -> Optional[Dict]:
        """Stage the packages and plan in ios_harness; unless --prepare-only, build, run, collect."""
        options = self.options
        root = harness.find_harness(options.harness_dir)
        files, packages = {}, []
        for name in options.encoders:
            paths = self.artifacts(name)
            if isinstance(paths, SamExportError):
                raise paths
            files[name] = {part: paths[part].name for part in ("encoder", "decoder")}
            packages += [paths["encoder"], paths["decoder"]]
        rows = [self.row_template(name, part, points, unit, precision, None) for name, part, points, unit in jobs]
        plan = harness.make_plan(options.device, options.runs, options.warmup, options.points, options.compress,
                                 harness.plan_jobs(rows, files))
        models = harness.prepare(root, plan, packages)
        self.say(f"staged {len(set(packages))} packages and BenchPlan.json ({len(plan['jobs'])} parts) in {models}")
        if options.prepare_only:
            return None
        if options.device == "iphone":
            from .ios import connected_iphones

            phones = connected_iphones()
            if not phones:
                raise PlatformError("no connected iPhone: connect one, unlock it, trust this Mac, and check "
                                    "`xcrun devicectl list devices`")
            phone = phones[0]
            spec = harness.Build(root, "ios", options.team, phone["identifier"])
            label = f"Core ML, {phone['model'] or 'iPhone'} ({phone['name']})"
        else:
            spec = harness.Build(root, "macos", options.team)
            label = f"Core ML, {cpu_model()} (ios_harness app)"
        self.say(f"building SAMBench for {spec.platform} with xcodebuild")
        harness.build(spec)
        if options.device == "iphone":
            data = harness.run_on_iphone(spec, plan, options.harness_timeout_s, say=self.say)
        else:
            data = harness.run_on_mac(spec, plan, options.harness_timeout_s, say=self.say)
        self.result = harness.finish_result(data, plan, label, self.device_info().get("peak_gflops"))
        self.result["versions"] = {**versions(), **self.result.get("versions", {})}
        self.write_progress()
        return self.result

    def row_template(self, name: str, part: str, points: Optional[int], unit: str, precision: str,
                     peak_gflops: Optional[float]) -> Dict:
        """What a row says before anything is measured: model, part, prompt, compute unit, cost."""
        spec, info = get_spec(name), _model_info(name)
        tokens = None if part == "encoder" else (points + 1 if spec.style == "sam" else 6)
        gmacs = (info["gmacs"]["encoder_1024"] if part == "encoder"
                 else next(v for k, v in info["gmacs"].items() if k.startswith("decoder")))
        return {"model": name, "title": spec.title, "style": spec.style, "part": part, "points": points,
                "tokens": tokens, "precision": precision, "compute_unit": unit, "file": None, "gmacs": gmacs,
                "compute_floor_ms": (gmacs * 2 / peak_gflops * 1e3) if peak_gflops else None,
                "memory_limit_mb": (round(self.options.memory_limit / 1024 ** 2) if self.options.memory_limit
                                    else None)}

    def measure(self, name: str, part: str, points: Optional[int], unit: str, precision: str,
                peak_gflops: Optional[float]) -> Dict:
        """One row: a part of one model on one compute unit, measured in a child process."""
        options = self.options
        row = self.row_template(name, part, points, unit, precision, peak_gflops)
        tokens = row["tokens"]
        paths = self.artifacts(name)
        if isinstance(paths, SamExportError):  # e.g. an int8 export refused by its quality floor
            return {**row, "status": "error", "error": f"no export to measure: {paths}"}
        row["file"] = paths[part].name
        if options.compress != "none" and paths["manifest"].exists():
            section = json.loads(paths["manifest"].read_text()).get(options.target, {}).get(part, {})
            row["quantization"] = (section.get("quantization") or {}).get("method")
        providers = (["CUDAExecutionProvider", "CPUExecutionProvider"] if options.device == "cuda"
                     else ["CPUExecutionProvider"])
        job = {"path": str(paths[part]), "part": part, "points": tokens or 1, "runs": options.runs,
               "warmup": options.warmup, "threads": options.threads, "compute_units": unit,
               "backend": "coreml" if options.target == "coreml" else "onnx", "providers": providers}
        return {**row, **run_part(job, options.memory_limit)}

    def write_progress(self) -> None:
        """Rewrite the JSON after every part so an interrupted run keeps what it measured."""
        if self.options.output:
            tmp = self.options.output.with_suffix(".json.tmp")
            tmp.write_text(report.to_json(self.result))
            os.replace(tmp, self.options.output)


@functools.lru_cache(maxsize=None)
def _model_info(name: str) -> Dict:
    from ..info import model_info

    return model_info(name)


def resolve_encoders(text: str) -> Tuple[str, ...]:
    if text == "all":
        return tuple(list_models())
    return tuple(get_spec(n.strip()).name for n in text.split(",") if n.strip())


def load_results(path: Path) -> Dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read bench results {path} ({e}); pass a JSON file written by --format json") \
            from None
    if not isinstance(data, dict) or data.get("schema") != report.SCHEMA:
        raise UsageError(f"{path} is not a samexport bench result ({report.SCHEMA})")
    return data
