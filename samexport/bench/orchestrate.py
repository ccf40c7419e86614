"""Benchmark orchestration: find (or convert) the exports, measure each part, write as you go."""

from __future__ import annotations

import datetime as dt
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..console import Progress
from ..errors import SamExportError, UsageError, first_line
from ..export.options import MAX_BATCH, check_points
from ..families.registry import get_spec, list_models
from ..fsutil import OutputFiles
from ..provenance import machine, versions
from . import device_profiles, harness, report
from .backends import Backend, backends_for, devices
from .child import run_part


@dataclass
class BenchOptions:
    """What to measure where; `target` None means the device's own (ONNX: cpu, cuda; Core ML: m1, iphone)."""

    device: str = "cpu"
    encoders: Tuple[str, ...] = ("repvit",)
    target: Optional[str] = None
    compute_units: Tuple[str, ...] = ("all",)
    points: Tuple[int, ...] = (1, 5)
    batch: int = 1  # prompt sets per decoder call
    runs: Optional[int] = None  # None: each part's own (`parts.BenchFacts.runs`)
    warmup: int = 1
    memory_limit: Optional[int] = None
    as_device: Optional[str] = None
    models_dir: Path = Path("models")
    compress: str = "none"
    output: Optional[Path] = None
    via_harness: bool = False  # m1 only; iphone always runs in the harness
    harness_dir: Optional[Path] = None
    team: Optional[str] = None
    prepare_only: bool = False
    harness_timeout_s: float = 3600.0
    one_job_per_launch: bool = False

    def runs_for(self, facts) -> int:
        """Timed runs of a part (`parts.BenchFacts`): --runs, else the part's own."""
        return self.runs if self.runs is not None else facts.runs

    def __post_init__(self) -> None:
        if self.device not in devices():
            raise UsageError(f"unknown --device {self.device!r}; choose one of: {', '.join(devices())}")
        offered = backends_for(self.device, self.via_harness)
        if not offered:
            raise UsageError(
                "--via-harness runs the ios_harness app: use it with --device m1 (--device iphone "
                "always does)"
            )
        if self.target is None:
            self.target = next(iter(offered))
        elif self.target.lower() not in offered:
            raise UsageError(
                f"--device {self.device} measures {' or '.join(offered)} exports, not {self.target}; "
                f"use --target {next(iter(offered))} or leave --target out"
            )
        self.backend: Backend = offered[self.target.lower()]
        backend = self.backend
        self.target = self.target.lower()
        if (self.runs is not None and self.runs < 1) or self.warmup < 0:
            raise UsageError("--runs must be at least 1 and --warmup at least 0")
        self.points = check_points(self.points)
        if not 1 <= self.batch <= MAX_BATCH:
            raise UsageError(f"--batch must be a prompt-set count from 1 to {MAX_BATCH}, got {self.batch}")
        if self.batch > 1 and self.backend.in_app:
            raise UsageError(
                "--batch above 1 is measured by the host bench (--device cpu, cuda or m1); the ios_harness "
                "app measures one prompt set per call"
            )
        if self.as_device and self.memory_limit is None:
            self.memory_limit = device_profiles.budget_bytes(self.as_device)
        from .worker import COMPUTE_UNITS

        bad = [c for c in self.compute_units if c not in COMPUTE_UNITS]
        if bad:
            raise UsageError(f"unknown --compute-units {bad[0]!r}; choose from: {', '.join(COMPUTE_UNITS)}")
        if self.compress not in ("none", "int8"):
            raise UsageError("bench measures --compress none or int8 exports")
        if self.prepare_only and not backend.in_app:
            raise UsageError(
                "--prepare-only stages packages for ios_harness: use it with --device iphone or "
                "--device m1 --via-harness"
            )
        if self.one_job_per_launch and not backend.in_app:
            raise UsageError(
                "--one-job-per-launch is for the ios_harness app (--device iphone, --device m1 "
                "--via-harness); on this machine every part already runs in its own process"
            )
        backend.check_models(self.encoders)
        if backend.in_app and self.memory_limit is not None:
            raise UsageError(
                "--memory-limit/--as-device emulate a budget on this machine; on a device through "
                "ios_harness the device's own limit applies (out-of-memory kills become oom rows)"
            )


class Bench:
    """One `samexport bench` run: rows measured by the device's backend, written as they come."""

    def __init__(
        self, options: BenchOptions, quiet: bool = False, files: Optional[OutputFiles] = None
    ) -> None:
        """`files`: the command's outputs, checked already (the progress report is written through them)."""
        self.options = options
        self.files = files or OutputFiles([options.output])
        self.backend = options.backend
        self.progress = Progress(quiet=quiet)
        self.result: Dict = {}
        self._artifacts: Dict = {}

    def say(self, text: str) -> None:
        self.progress.say(text)

    def artifacts(self, name: str):
        """The exports to measure, converted first when none is there; the conversion error if that fails
        (a row says it). A partial set is the user's to mend: that error ends the run."""
        if name not in self._artifacts:
            paths, manifest, convert_options = self._expected(name)
            try:
                if not all(p.exists() for p in paths.values()):
                    self.say(
                        f"{get_spec(name).title}: no {self.options.target} export in "
                        f"{self.options.models_dir}, converting first"
                    )
                    from ..export.convert import convert

                    convert(convert_options, quiet=True)
                self._artifacts[name] = {**paths, "manifest": manifest}
            except SamExportError as e:
                self._artifacts[name] = e
        return self._artifacts[name]

    def _expected(self, name: str):
        """The parts bench measures in --models-dir, their manifest and the options that would write them; a
        set with some parts missing is refused (bench never replaces an export)."""
        from ..export.options import ConvertOptions, artifact_names

        spec, target = get_spec(name), self.options.target
        convert_options = ConvertOptions(
            encoder=name,
            target=target,
            output_dir=self.options.models_dir,
            compress=self.options.compress,
            batch=tuple(sorted({1, self.options.batch})),
        )
        names = artifact_names(spec, convert_options)
        paths = {
            part: self.options.models_dir / names[(target, part)]
            for part in spec.family.bench_parts
            if (target, part) in names
        }
        present = [p for p in paths.values() if p.exists()]
        if present and len(present) < len(paths):
            missing = next(p for p in paths.values() if not p.exists())
            raise UsageError(
                f"{missing} is missing beside {present[0].name}: bench measures a whole export and never "
                f"replaces one; re-export it with samexport convert --encoder {name} --target {target} "
                "--force (with the --checkpoint it was made from), or give another --models-dir"
            )
        return paths, self.options.models_dir / names[("manifest", "")], convert_options

    def interface(self, name: str, part: str):
        """The part's interface as this bench's target exports it."""
        from ..export.target import targets

        spec, target = get_spec(name), targets()[self.options.target]
        convert_options = self._expected(name)[2]
        return spec.family.part_interfaces(
            spec.family.export_shapes(convert_options), target.form(convert_options)
        )[part]

    def default_runs(self, jobs) -> Dict[str, int]:
        """part -> its timed runs, for the result's record of what --runs left to each part."""
        return {part: self.interface(name, part).bench.runs for name, part, _, _ in jobs}

    def inputs(self, name: str, part: str, path: Path) -> List[Dict]:
        """The part's inputs as its family describes them, in the form its target (and file) has."""
        from ..export.target import targets
        from ..parts import PartForm

        spec, target = get_spec(name), targets()[self.options.target]
        convert_options = self._expected(name)[2]
        form = PartForm(target.packed_prompts, target.image_input_of(path), target.dynamic)
        interface = spec.family.part_interfaces(spec.family.export_shapes(convert_options), form)[part]
        return [t.describe() for t in interface.inputs]

    def device_info(self) -> Dict:
        info = self.backend.device_info(self.progress)
        if self.options.as_device:
            profile = device_profiles.profile(self.options.as_device)
            info["memory_profile"] = profile
            info["label"] += f", {profile['name']} memory budget"
        return info

    def jobs(self):
        units = self.backend.compute_units(self.options.compute_units)
        for name in self.options.encoders:
            for unit in units:
                family = get_spec(name).family
                for part in family.bench_parts:
                    for size in family.bench_sizes(part, self.options.points):
                        yield name, part, size, unit

    def run(self) -> Optional[Dict]:
        """The bench result (None with --prepare-only, which only stages the harness)."""
        options = self.options
        if not options.prepare_only:
            self.backend.check_platform()
        precision = self.backend.precision(options.compress)
        jobs = list(self.jobs())
        if self.backend.in_app:
            return self.run_harness(jobs, precision)
        self.result = {
            "schema": report.SCHEMA,
            "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(),
            "versions": versions(),
            "device": self.device_info(),
            "options": {
                "target": options.target,
                "runs": options.runs if options.runs is not None else self.default_runs(jobs),
                "warmup": options.warmup,
                "points": list(options.points),
                "compress": options.compress,
                "memory_limit_mb": round(options.memory_limit / 1024**2) if options.memory_limit else None,
                "as_device": options.as_device,
                "budget_rule": device_profiles.load()["budget_rule"],
            },
            "rows": [],
        }
        peak = self.result["device"].get("peak_gflops")
        from rich.progress import Progress as Bar

        with Bar(console=self.progress.console, transient=True) as bar:
            task = bar.add_task("benchmark", total=len(jobs))
            for name, part, size, unit in jobs:
                template = self.row_template(name, part, size, unit, precision, peak)
                label = f"{template['title']} {report.part_label(template)}"
                bar.update(task, description=label)
                row = self.measure(template)
                self.result["rows"].append(row)
                self.write_progress()
                bar.advance(task)
                self.say(
                    f"  {label}: {report.cell(row)}"
                    + (" ms" if row["status"] == "ok" else f" ({row.get('error', '')[:160]})")
                )
        self.remeasure_peak()
        return self.result

    def remeasure_peak(self) -> None:
        """A peak measured on this machine is measured again after the run and the better one kept, so
        that other work during one measurement cannot push the compute floor above the measurements."""
        device = self.result["device"]
        if not device.get("peak_measured_here"):
            return
        after = self.backend.device_info(self.progress)["peak_gflops"]
        device["peak_gflops_before_after"] = [device["peak_gflops"], after]
        device["peak_gflops"] = max(device["peak_gflops"], after)
        device["peak_source"] += "; the better of a measurement before and one after the run"
        for row in self.result["rows"]:
            if row.get("compute_floor_ms") is not None:
                row["compute_floor_ms"] = row["gmacs"] * 2 / device["peak_gflops"] * 1e3
        self.write_progress()

    def run_harness(self, jobs, precision: str) -> Optional[Dict]:
        """Stage the packages and plan in ios_harness; unless --prepare-only, build, run, collect."""

        options = self.options
        root = self.backend.find_app(options.harness_dir)
        from ..coreml_package import CoreMLPackage

        files, functions, packages = {}, {}, []
        for name in options.encoders:
            paths = self.artifacts(name)
            if isinstance(paths, SamExportError):
                raise paths
            parts = get_spec(name).family.bench_parts
            files[name] = {part: paths[part].name for part in parts}
            functions[name] = {part: CoreMLPackage(paths[part]).functions for part in parts}
            packages += [paths[part] for part in parts]
        rows = [self.row_template(name, part, size, unit, precision, None) for name, part, size, unit in jobs]
        plan = harness.make_plan(
            options.device,
            min(row["runs"] for row in rows),
            options.warmup,
            options.points,
            options.compress,
            harness.plan_jobs(rows, files, functions, self.function_of),
            one_job_per_launch=options.one_job_per_launch,
        )
        models = self.backend.stage(root, plan, packages)
        self.say(
            f"staged {len(set(packages))} packages and BenchPlan.json ({len(plan['jobs'])} parts) in {models}"
        )
        if options.prepare_only:
            return None
        self.say(f"building the {options.device} app")
        build, label = self.backend.build(root, options.team)
        data = self.backend.run(build, plan, options.harness_timeout_s, self.say)
        self.result = self.backend.finish(data, plan, label, self.device_info().get("peak_gflops"))
        self.result["versions"] = {**versions(), **self.result.get("versions", {})}
        self.write_progress()
        return self.result

    def function_of(self, name: str, part: str, tokens: int) -> Optional[str]:
        """The function of a part's interface that takes one prompt set of `tokens` tokens."""
        function = self.interface(name, part).function_at({"B": 1, "N": tokens})
        return function.name if function else None

    def row_template(
        self,
        name: str,
        part: str,
        size: Optional[int],
        unit: str,
        precision: str,
        peak_gflops: Optional[float],
    ) -> Dict:
        """What a row says before anything is measured: model, part, its size (a decoder's clicks, a tube
        head's frames), compute unit, cost."""
        spec, info = get_spec(name), _model_info(name)
        interface = self.interface(name, part)
        facts = interface.bench
        dims = spec.family.bench_dims(facts, size)
        swept = {field: (size if facts.sweep == field else None) for field in report.SWEEP_FIELDS}
        # the part's own GMACs at this size where the family counted them so, else the part's
        specific = f"{part}_{size}_{facts.sweep}"
        gmacs = next(
            (v for k, v in info["gmacs"].items() if k.startswith(specific)),
            next(v for k, v in info["gmacs"].items() if k.startswith(part)),
        )
        batched = any("B" in t.shape for t in interface.inputs)
        return {
            "model": name,
            "title": spec.title,
            "family": spec.family.name,
            "part": part,
            **swept,
            "tokens": dims.get("N"),
            "sizes": {**dims, **({"B": self.options.batch} if batched else {})},
            "batch": self.options.batch if batched else None,
            "column": report.column_of(facts, spec, size),
            "precision": precision,
            "compute_unit": unit,
            "file": None,
            "gmacs": gmacs,
            "compute_floor_ms": (gmacs * 2 / peak_gflops * 1e3) if peak_gflops else None,
            "runs": self.options.runs_for(facts),
            "memory_limit_mb": (
                round(self.options.memory_limit / 1024**2) if self.options.memory_limit else None
            ),
        }

    def measure(self, row: Dict) -> Dict:
        """One row (its `row_template`): a part of one model on one compute unit, measured in a child
        process."""
        options = self.options
        name, part = row["model"], row["part"]
        paths = self.artifacts(name)
        if isinstance(paths, SamExportError):  # e.g. an int8 export refused by its quality floor
            return {**row, "status": "error", "error": f"no export to measure: {paths}"}
        row["file"] = paths[part].name
        if options.compress != "none" and paths["manifest"].exists():
            section = json.loads(paths["manifest"].read_text()).get(options.target, {}).get(part, {})
            row["quantization"] = (section.get("quantization") or {}).get("method")
        job = {
            "path": str(paths[part]),
            "part": part,
            "inputs": self.inputs(name, part, paths[part]),
            "sizes": row["sizes"],
            "runs": row["runs"],
            "warmup": options.warmup,
            **self.backend.worker_job(row["compute_unit"]),
        }
        return {**row, **run_part(job, options.memory_limit)}

    def write_progress(self) -> None:
        """Rewrite the JSON after every part so an interrupted run keeps what it measured."""
        if self.options.output:
            self.files.write_text(self.options.output, report.to_json(self.result))


@functools.lru_cache(maxsize=None)
def _model_info(name: str) -> Dict:
    from ..info import model_info

    return model_info(name)


def resolve_encoders(text: str) -> Tuple[str, ...]:
    if text == "all":
        return tuple(list_models())
    return tuple(get_spec(n.strip()).name for n in text.split(",") if n.strip())


def load_results(path: Path) -> Dict:
    """A result file written by `bench --format json` (or the harness), with the fields reports read."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise UsageError(
            f"cannot read bench results {path} ({first_line(e)}); pass a JSON file written by --format json"
        ) from None
    if not isinstance(data, dict) or data.get("schema") not in report.READABLE_SCHEMAS:
        raise UsageError(f"{path} is not a samexport bench result ({', '.join(report.READABLE_SCHEMAS)})")
    data = report.upgrade_result(data)
    problems = []
    if not isinstance(data.get("device"), dict) or not isinstance(data["device"].get("label"), str):
        problems.append("device.label")
    if not isinstance(data.get("options"), dict) or "target" not in data["options"]:
        problems.append("options.target")
    rows = data.get("rows")
    if not isinstance(rows, list) or not all(
        isinstance(r, dict) and {"model", "part", "status"} <= set(r) for r in rows
    ):
        problems.append("rows (each with model, part, status)")
    else:
        numbers = ("median_ms", "p90_ms", "min_ms", "max_ms", "mean_ms", "std_ms")
        for row in rows:
            stats = row.get("stats")
            values = [row.get(k) for k in ("peak_rss_mb", "gmacs", "compute_floor_ms", "load_ms", "first_ms")]
            values += [stats.get(k) for k in numbers] if isinstance(stats, dict) else []
            if (stats is not None and not isinstance(stats, dict)) or not all(
                v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values
            ):
                problems.append(f"numbers in the row of {str(row['model'])[:40]} {str(row['part'])[:20]}")
                break
    if problems:
        raise UsageError(
            f"{path} is an incomplete bench result (no {', '.join(problems)}); re-run samexport bench "
            "--format json"
        )
    return data


def distinct_labels(results: List[Dict], paths: List[Path]) -> List[Dict]:
    """Results whose device labels repeat get their file name added, so no two runs share a table row."""
    counts: Dict[str, int] = {}
    for result in results:
        counts[result["device"]["label"]] = counts.get(result["device"]["label"], 0) + 1
    out = []
    for result, path in zip(results, paths):
        label = result["device"]["label"]
        if counts[label] > 1:
            result = {**result, "device": {**result["device"], "label": f"{label} ({Path(path).name})"}}
        out.append(result)
    return out
