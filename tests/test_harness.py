"""The Python side of ios_harness: staging packages and the plan, the commands it runs on a Mac, the
relaunch-after-kill loop, and reading the app's result file into the bench tables.

The Swift side cannot be compiled here; its JSON keys are checked against the Swift sources so the
two halves cannot drift apart silently.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import ROOT, invoke, one_line_error, swift_source
from helpers import run_bench as cli
from samexport.bench import harness, report
from samexport.errors import SamExportError


def swift_keys(file: str) -> set:
    """JSON keys a Swift Codable type reads: `case name` entries and `= "json_name"` raw values."""
    text = swift_source(file)
    keys = set(re.findall(r'=\s*"([a-z_0-9]+)"', text))
    for line in re.findall(r"^\s*case ([a-zA-Z0-9_, ]+)$", text, flags=re.M):
        keys.update(name.strip() for name in line.split(","))
    return keys


@pytest.fixture()
def harness_copy(tmp_path) -> Path:
    target = tmp_path / "ios_harness"
    shutil.copytree(
        ROOT / "ios_harness",
        target,
        ignore=shutil.ignore_patterns("Models", "build", ".build", "*.xcodeproj"),
    )
    return target


def test_prepare_only_stages_packages_and_plan(exports, harness_copy):
    out, manifests = exports
    result = cli(
        "--device",
        "iphone",
        "--encoder",
        "tinyvit",
        "--models-dir",
        str(out),
        "--harness-dir",
        str(harness_copy),
        "--prepare-only",
        "--points",
        "1,5",
        "--compute-units",
        "all,cpu_only",
        "--runs",
        "7",
    )
    assert result.returncode == 0, result.stderr
    models = harness_copy / "Models"
    for name in ("MobileSAMEncoder.mlpackage", "MobileSAMDecoder.mlpackage"):
        copied, original = models / name, out / name
        assert sorted(p.relative_to(copied) for p in copied.rglob("*")) == sorted(
            p.relative_to(original) for p in original.rglob("*")
        )
        assert (copied / "Manifest.json").read_bytes() == (original / "Manifest.json").read_bytes()
    plan = json.loads((models / "BenchPlan.json").read_text())
    assert plan["schema"] == harness.PLAN_SCHEMA and plan["runs"] == 7 and plan["device_kind"] == "iphone"
    jobs = plan["jobs"]
    assert [(j["part"], j["points"], j["tokens"], j["compute_unit"]) for j in jobs] == [
        ("encoder", None, None, "all"),
        ("decoder", 1, 2, "all"),
        ("decoder", 5, 6, "all"),
        ("encoder", None, None, "cpu_only"),
        ("decoder", 1, 2, "cpu_only"),
        ("decoder", 5, 6, "cpu_only"),
    ]
    assert len({j["id"] for j in jobs}) == len(jobs)
    assert all((models / j["file"]).is_dir() for j in jobs)
    # Every decoder prompt is one of the package's enumerated token counts.
    assert {j["tokens"] for j in jobs if j["tokens"]} <= set(
        manifests["tinyvit"]["decoder_prompt"]["token_counts"]
    )
    # The app decodes exactly these keys (BenchPlan / BenchJob in BenchPlan.swift).
    assert set(plan) | set(jobs[0]) <= swift_keys("BenchPlan.swift")
    assert not list(harness_copy.glob(".samexport-models-*"))


def test_failed_staging_leaves_models_as_they_were(tmp_path, monkeypatch):
    root = tmp_path / "ios_harness"
    (root / "Models").mkdir(parents=True)
    (root / "Models" / "BenchPlan.json").write_text("earlier plan")
    packages = []
    for name in ("AEncoder.mlpackage", "ADecoder.mlpackage"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "Manifest.json").write_text("{}")
        packages.append(tmp_path / name)
    copies = []

    def copytree(source, target):
        copies.append(source)
        if len(copies) == 2:
            raise OSError(28, "No space left on device")
        return real_copytree(source, target)

    real_copytree = shutil.copytree
    monkeypatch.setattr(harness.shutil, "copytree", copytree)
    with pytest.raises(SamExportError, match="No space left on device"):
        harness.prepare(root, {"jobs": []}, packages)
    assert (root / "Models" / "BenchPlan.json").read_text() == "earlier plan"
    assert sorted(p.name for p in root.iterdir()) == ["Models"]


def app_result(plan, rows, finished=True):
    """A result file as BenchResult.swift writes it (keys checked against the Swift source below)."""
    return {
        "schema": "samexport.bench/2",
        "created_utc": "2026-11-22T10:00:00Z",
        "machine": {
            "description": "iPhone13,2 (iPhone13,2), 6 cores, 4 GiB RAM, iOS 17.5",
            "cpu": "iPhone13,2",
            "cores": 6,
            "ram_gib": 3.7,
            "os": "iOS Version 17.5",
            "thermal_state": "nominal",
        },
        "versions": {"samexport": "0.1.0", "harness": "0.1.0", "os": "iOS Version 17.5"},
        "device": {"kind": "iphone", "label": "Core ML, iPhone13,2"},
        "options": {
            "target": "coreml",
            "runs": plan["runs"],
            "warmup": plan["warmup"],
            "points": plan["points"],
            "compress": "none",
            "memory_metric": "phys_footprint (...), MB",
        },
        "rows": rows,
        "harness": {"plan_id": plan["plan_id"], "finished": finished, "launches": 2},
    }


def sample_plan():
    rows = [
        {
            "model": "repvit",
            "title": "RepViT-SAM",
            "family": "sam",
            "part": "encoder",
            "points": None,
            "tokens": None,
            "precision": "fp16",
            "gmacs": 35.1,
            "compute_unit": "all",
            "runs": 5,
        },
        {
            "model": "repvit",
            "title": "RepViT-SAM",
            "family": "sam",
            "part": "decoder",
            "points": 1,
            "tokens": 2,
            "precision": "fp16",
            "gmacs": 1.6,
            "compute_unit": "all",
            "runs": 20,
        },
        {
            "model": "sam_vit_b",
            "title": "SAM ViT-B",
            "family": "sam",
            "part": "encoder",
            "points": None,
            "tokens": None,
            "precision": "fp16",
            "gmacs": 488.2,
            "compute_unit": "all",
            "runs": 5,
        },
    ]
    files = {
        "repvit": {"encoder": "RepViTSAMEncoder.mlpackage", "decoder": "RepViTSAMDecoder.mlpackage"},
        "sam_vit_b": {"encoder": "SAMViTBEncoder.mlpackage", "decoder": "SAMViTBDecoder.mlpackage"},
    }
    return harness.make_plan("iphone", 5, 1, [1], "none", harness.plan_jobs(rows, files))


def measured_rows(plan):
    encoder, decoder, vit = plan["jobs"]
    job_fields = {k: v for k, v in encoder.items() if k != "id"}
    ok = {
        **job_fields,
        "job_id": encoder["id"],
        "status": "ok",
        "samples_ms": [48.0, 49.5, 48.9, 50.1, 48.7],
        "stats": {
            "n": 5,
            "median_ms": 48.9,
            "p90_ms": 49.86,
            "min_ms": 48.0,
            "max_ms": 50.1,
            "mean_ms": 49.04,
            "std_ms": 0.71,
        },
        "compile_ms": 950.0,
        "load_ms": 310.0,
        "first_ms": 160.0,
        "peak_rss_mb": 402.3,
        "available_memory_mb": 2650.0,
    }
    oom = {
        **{k: v for k, v in vit.items() if k != "id"},
        "job_id": vit["id"],
        "status": "oom",
        "error": "ended during first prediction (the launch stopped before the job finished), "
        "2650 MB available before it",
        "available_memory_mb": 2650.0,
    }
    return ok, oom


def test_app_result_becomes_the_bench_tables(tmp_path):
    plan = sample_plan()
    ok, oom = measured_rows(plan)
    data = app_result(plan, [oom, ok])
    assert set(data) | set(data["options"]) | set(data["harness"]) | set(data["machine"]) <= swift_keys(
        "BenchResult.swift"
    ) | {"target"}
    assert set(ok) | set(oom) <= swift_keys("BenchResult.swift") | swift_keys("LatencyStats.swift")
    path = tmp_path / "samexport-bench.json"
    path.write_text(json.dumps(data))
    read = harness.read_result(path, plan)
    assert read is not None and harness.read_result(path, {**plan, "plan_id": "another"}) is None
    result = harness.finish_result(read, plan, "Core ML, iPhone 12 (test phone)", None)
    assert [r["job_id"] for r in result["rows"]] == [j["id"] for j in plan["jobs"]]
    assert [r["status"] for r in result["rows"]] == ["ok", "error", "oom"]
    assert "stopped before this job" in result["rows"][1]["error"]
    saved = tmp_path / "iphone.json"
    saved.write_text(report.to_json(result))
    paper = cli("--from", str(saved), "--table", "paper")
    assert paper.returncode == 0, paper.stderr
    assert "| Core ML, iPhone 12 (test phone) | 48.9 | ERROR | OOM |" in paper.stdout
    markdown = cli("--from", str(saved), "--format", "markdown")
    assert markdown.returncode == 0 and "| SAM ViT-B | encoder | fp16 | oom |" in markdown.stdout


def test_commands_a_mac_would_run(tmp_path):
    # devicectl's CoreDevice identifier and the hardware UDID differ; xcodebuild takes the UDID (issue 13, 1)
    spec = harness.Build(
        tmp_path, "ios", "ABCDE12345", device_id="5B3C1F0E-7A2D-4E9B-9C11-2F6A8D0E4B7C", udid="00008101-000A"
    )
    assert spec.generate_command() == [
        "xcodegen",
        "generate",
        "--spec",
        str(tmp_path / "project.yml"),
        "--project",
        str(tmp_path),
    ]
    assert spec.build_command() == [
        "xcodebuild",
        "-project",
        str(tmp_path / "SAMHarness.xcodeproj"),
        "-scheme",
        "SAMBench",
        "-configuration",
        "Release",
        "-destination",
        "platform=iOS,id=00008101-000A",
        "-derivedDataPath",
        str(tmp_path / "build"),
        "-allowProvisioningUpdates",
        "-allowProvisioningDeviceRegistration",
        "DEVELOPMENT_TEAM=ABCDE12345",
        "build",
    ]
    assert spec.app == tmp_path / "build/Build/Products/Release-iphoneos/SAMBench.app"
    mac = harness.Build(tmp_path, "macos", None)
    assert "platform=macOS,arch=arm64" in mac.build_command() and "DEVELOPMENT_TEAM" not in " ".join(
        mac.build_command()
    )
    assert "CODE_SIGN_IDENTITY=-" in mac.build_command()  # issue 13 item 2: ad-hoc without a team
    assert "generic/platform=iOS" in harness.Build(tmp_path, "ios", "T").build_command()
    assert harness.devicectl_install("D", spec.app)[:5] == ["xcrun", "devicectl", "device", "install", "app"]
    assert harness.devicectl_launch("D")[-2:] == ["--terminate-existing", "org.samexport.SAMBench"]
    pull = harness.devicectl_pull("D", tmp_path / "r.json")
    assert pull[pull.index("--source") + 1] == "Documents/samexport-bench.json"
    assert pull[pull.index("--domain-type") + 1] == "appDataContainer"
    assert harness.mac_app_command(mac.app, tmp_path)[1:] == ["--output", str(tmp_path), "--exit-when-done"]
    running = {
        "result": {
            "runningProcesses": [
                {"executable": "file:///private/var/containers/Bundle/Application/X/SAMBench.app/SAMBench"}
            ]
        }
    }
    assert harness.app_is_running(running)
    assert not harness.app_is_running(
        {"result": {"runningProcesses": [{"executable": "/usr/libexec/backboardd"}]}}
    )


def test_iphone_run_relaunches_after_a_kill(tmp_path):
    """devicectl answers as a phone whose app is killed once (jetsam) and finishes after a relaunch."""
    plan = sample_plan()
    ok, oom = measured_rows(plan)
    spec = harness.Build(tmp_path, "ios", None, "PHONE")
    calls, state = [], {"launches": 0}

    def devicectl(command):
        calls.append(command[3:5])
        if command[3:5] == ["process", "launch"]:
            state["launches"] += 1
        elif command[3:5] == ["copy", "from"]:
            destination = Path(command[command.index("--destination") + 1])
            rows = [ok] if state["launches"] == 1 else [ok, oom, {**ok, "job_id": plan["jobs"][1]["id"]}]
            destination.write_text(json.dumps(app_result(plan, rows, finished=state["launches"] > 1)))
        elif command[3:5] == ["info", "processes"]:
            Path(command[-1]).write_text(json.dumps({"result": {"runningProcesses": []}}))  # killed
        return subprocess.CompletedProcess(command, 0, "", "")

    messages = []
    data = harness.run_on_iphone(
        spec, plan, timeout_s=60, poll_s=0, run=devicectl, sleep=lambda _: None, say=messages.append
    )
    assert state["launches"] == 2 and data["harness"]["finished"]
    assert calls[0] == ["install", "app"]
    assert any("relaunching" in m for m in messages)


def test_iphone_run_gives_up_after_repeated_kills(tmp_path):
    plan = sample_plan()

    def devicectl(command):
        if command[3:5] == ["info", "processes"]:
            Path(command[-1]).write_text(json.dumps({"result": {"runningProcesses": []}}))
        return subprocess.CompletedProcess(
            command, 1 if command[3:5] == ["copy", "from"] else 0, "", "no file"
        )

    with pytest.raises(SamExportError, match="stopped 4 times"):
        harness.run_on_iphone(
            harness.Build(tmp_path, "ios", None, "PHONE"),
            plan,
            timeout_s=60,
            poll_s=0,
            run=devicectl,
            sleep=lambda _: None,
        )


@pytest.mark.parametrize(
    "args,message",
    [
        (["--device", "iphone"], "needs macOS with Xcode and a connected iPhone"),
        (["--device", "m1", "--via-harness"], "needs macOS with Xcode on Apple silicon"),
        (["--device", "cpu", "--via-harness"], "--via-harness runs the ios_harness app"),
        (["--device", "m1", "--prepare-only"], "--prepare-only stages packages"),
        (["--device", "iphone", "--as-device", "iphone12"], "the device's own limit applies"),
        (
            ["--device", "iphone", "--prepare-only", "--harness-dir", "/nonexistent/ios_harness"],
            "no ios_harness folder",
        ),
    ],
)
def test_harness_bad_input_is_one_line_exit_2(capsys, args, message):
    assert message in one_line_error(invoke(capsys, "bench", *args))


def test_project_and_sources_review_fixes():
    """Issue 13 items 3-6, as far as Linux can check them: XcodeGen spec values and guarded Swift."""
    import re

    import yaml

    project = yaml.safe_load((ROOT / "ios_harness/project.yml").read_text())
    demo_packages = [
        s for s in project["targets"]["SAMDemo"]["sources"] if str(s.get("path", "")).endswith(".mlpackage")
    ]
    assert demo_packages and all(s.get("optional") is True for s in demo_packages)  # item 3
    tests = project["targets"]["SAMBenchTests"]["settings"]["base"]
    assert (
        tests["TEST_HOST[sdk=macosx*]"] == "$(BUILT_PRODUCTS_DIR)/SAMBench.app/Contents/MacOS/SAMBench"
    )  # item 5
    metrickit = swift_source("MetricKitMonitor.swift")
    assert re.search(r"#if os\(iOS\)\nimport MetricKit\n#endif", metrickit)  # item 4
    assert metrickit.count("public final class MetricKitMonitor") == 2 and "#else" in metrickit
    app = (ROOT / "ios_harness/App/SAMBenchApp.swift").read_text()
    assert 'environment["XCTestConfigurationFilePath"] == nil' in app  # item 6


def test_breadcrumbs_carry_their_plan():
    """Issue 13 item 7: a crumb names its plan; the runner reads only its own plan's and clears others."""
    crumbs = swift_source("Breadcrumbs.swift")
    runner = swift_source("BenchmarkRunner.swift")
    assert 'case planID = "plan_id"' in crumbs and "crumb.planID == planID" in crumbs
    assert (
        "breadcrumbs.unfinished(planID: plan.planID)" in runner and "Breadcrumb(planID: plan.planID" in runner
    )
    assert "unfinished()" not in runner


def test_demo_and_app_layout_review_fixes():
    """Issue 13 item 9: the Demo says which packages it builds against, loads off the main actor, drops
    stale results; the app's minimum window size is macOS-only."""
    demo = (ROOT / "ios_harness/Demo/SAMDemoApp.swift").read_text()
    assert "by default (image input, iOS16 target" in demo
    assert "try existing ?? Segmenter()" in demo
    # every result computed off the main actor is dropped when a newer request was made meanwhile
    assert demo.count("guard request == generation") == demo.count("Task.detached") >= 3
    app = (ROOT / "ios_harness/App/SAMBenchApp.swift").read_text()
    assert "#if os(macOS)\n        .frame(minWidth: 420" in app


# A JetsamEvent report as Apple documents it ("Identifying high-memory use with jetsam event reports"):
# a one-line header, then the body with memoryStatus.pageSize and the processes array.
JETSAM_REPORT = (
    '{"bug_type":"298","timestamp":"2026-11-28 10:00:00.00 +0000","os_version":"iPhone OS 18.1 (22B83)"}\n'
    + json.dumps(
        {
            "product": "iPhone13,2",
            "largestProcess": "SAMBench",
            "memoryStatus": {"pageSize": 16384},
            "processes": [
                {"name": "SpringBoard", "pid": 58, "rpages": 20000},
                {
                    "name": "SAMBench",
                    "pid": 812,
                    "rpages": 89600,
                    "reason": "per-process-limit",
                    "states": ["frontmost"],
                },
            ],
        },
        indent=2,
    )
)


def test_jetsam_reports_back_oom_rows():
    """Issue 13 item 11: an oom row carries the system's record of the kill, or a labelled weaker verdict."""
    from samexport.bench import jetsam

    report = jetsam.parse_report(JETSAM_REPORT)
    kill = jetsam.kill_of(report, file="JetsamEvent-2026-11-28-100000.ips")
    assert kill["reason"] == "per-process-limit" and kill["footprint_mb"] == 1400.0 and kill["pid"] == 812
    assert jetsam.parse_report('{"bug_type":"309"}\n{}') is None and jetsam.parse_report("not json") is None
    assert jetsam.kill_of(report, process="OtherApp") is None
    rows = [{"status": "ok"}, {"status": "oom"}, {"status": "oom"}]
    jetsam.attach_evidence(rows, [kill, None])
    assert rows[1]["oom_evidence"].startswith("jetsam: per-process-limit at 1400.0 MB (JetsamEvent-")
    assert rows[2]["oom_evidence"].startswith("breadcrumb only") and "oom_evidence" not in rows[0]


def test_iphone_run_pulls_the_jetsam_report_of_the_kill(tmp_path):
    """The driver lists the crash logs before the run, pulls the JetsamEvent that appears with the kill,
    and puts it in the oom row's evidence."""
    plan = sample_plan()
    ok, oom = measured_rows(plan)
    spec = harness.Build(tmp_path, "ios", None, device_id="PHONE")
    state = {"launches": 0}
    old, new = "Retired/JetsamEvent-2026-11-27-090000.ips", "JetsamEvent-2026-11-28-100000.ips"

    def devicectl(command):
        if command[3:5] == ["process", "launch"]:
            state["launches"] += 1
        elif command[3:5] == ["info", "files"]:
            names = [old] + ([new] if state["launches"] >= 1 else [])
            Path(command[-1]).write_text(json.dumps({"result": {"files": [{"name": n} for n in names]}}))
        elif command[3:5] == ["copy", "from"] and "systemCrashLogs" in command:
            assert command[command.index("--source") + 1] == new, "an earlier report was pulled"
            Path(command[command.index("--destination") + 1]).write_text(JETSAM_REPORT)
        elif command[3:5] == ["copy", "from"]:
            rows = [ok] if state["launches"] == 1 else [ok, oom, {**ok, "job_id": plan["jobs"][1]["id"]}]
            Path(command[command.index("--destination") + 1]).write_text(
                json.dumps(app_result(plan, rows, finished=state["launches"] > 1))
            )
        elif command[3:5] == ["info", "processes"]:
            Path(command[-1]).write_text(json.dumps({"result": {"runningProcesses": []}}))
        return subprocess.CompletedProcess(command, 0, "", "")

    data = harness.run_on_iphone(spec, plan, timeout_s=60, poll_s=0, run=devicectl, sleep=lambda _: None)
    (oom_row,) = [r for r in data["rows"] if r["status"] == "oom"]
    assert (
        oom_row["oom_evidence"]
        == f"jetsam: per-process-limit at 1400.0 MB ({new}, 2026-11-28 10:00:00.00 +0000)"
    )
    assert data["harness"]["jetsam_kills"][0]["file"] == new


def test_the_crumb_follows_the_footprint():
    """Issue 13 item 11: the live breadcrumb is rewritten from the footprint sampler (about every 250 ms).
    The sampler is platform-neutral (SAMHarnessCore) and the XCTest
    testTheSamplerRefreshesWithTheLatestFootprint runs it (issue 25: its first refresh was due at
    DISPATCH_TIME_NOW + 250 ms forever, so it never fired)."""
    sampler = swift_source("RunnerPolicy.swift")
    runner = swift_source("BenchmarkRunner.swift")
    assert "refreshInterval: DispatchTimeInterval = .milliseconds(250)" in sampler
    assert "onRefresh?(now)" in sampler
    assert "DispatchTime(uptimeNanoseconds: 0)" not in sampler
    refresh = "MemoryProbe.sampler { [weak self] footprint in self?.refreshCrumb(footprintBytes: footprint) }"
    assert refresh in runner
    assert "liveCrumb = nil" in runner  # a refresh after the part ended writes nothing


def test_load_times_mean_one_thing_on_both_paths():
    """Issue 13 item 12: `load_ms` is the uncached first load from a fresh compile, `load_warm_ms` a second
    load from the same compiled URL, `compile_ms` the compile, on the harness and on `--device m1`."""
    import inspect

    from samexport.bench import worker

    swift = swift_source("BenchResult.swift")
    assert 'case loadWarmMs = "load_warm_ms"' in swift and 'case compileMs = "compile_ms"' in swift
    runner = swift_source("BenchmarkRunner.swift")
    assert runner.index("row.loadMs =") < runner.index("row.loadWarmMs =")
    # issue 25: the compute plan is loaded after both timed loads, so it cannot pre-specialize the model
    assert runner.index("row.loadWarmMs =") < runner.index("row.placement =")
    source = inspect.getsource(worker.coreml_loads)
    assert "compile_model(path, destination_path=" in source and source.count("CompiledMLModel(compiled") == 2
    assert "benchmark_load" not in inspect.getsource(worker.measure_coreml)


def test_statistics_settle_before_they_count(tmp_path):
    """Issue 13 item 13: 20 timed runs by default for decoders (5 for encoders) on every path; the
    harness records thermal state and Low Power Mode per row, waits for a cool device, warms up by a
    budget, frees each prediction's buffers, and holds off App Nap on macOS."""
    from samexport.bench.orchestrate import Bench, BenchOptions

    default = Bench(BenchOptions(encoders=("tinyvit",)), quiet=True)
    assert default.row_template("tinyvit", "decoder", 1, "cpu", "fp32", None)["runs"] == 20
    assert default.row_template("tinyvit", "encoder", None, "cpu", "fp32", None)["runs"] == 5
    given = Bench(BenchOptions(encoders=("tinyvit",), runs=3), quiet=True)
    assert given.row_template("tinyvit", "decoder", 1, "cpu", "fp32", None)["runs"] == 3
    runner = swift_source("BenchmarkRunner.swift")
    policy = swift_source("RunnerPolicy.swift")
    assert "minimumRunsFloor = 10" in policy and "defaultMinimumSeconds = 1.0" in policy
    for needle in (
        "waitForCoolDevice()",
        "WarmupBudget(planWarmup: plan.warmup)",
        "sampler.pause()",
        "try autoreleasepool",
        "job.runs ?? plan.runs",
        "beginActivity(",
        "row.thermalStateEnd",
        "row.lowPowerModeStart",
    ):
        assert needle in runner, needle
    result = swift_source("BenchResult.swift")
    assert 'case thermalStateStart = "thermal_state_start"' in result


def test_memory_means_one_thing(capsys):
    """Issue 13 item 14: per-stage footprint peaks, the kernel's exact high-water mark, the limit as
    footprint + available at the job's start, a one-job-per-launch mode, and columns named for what
    they hold."""
    from samexport.bench import report
    from samexport.bench.orchestrate import BenchOptions

    swift = swift_source("BenchResult.swift")
    for key in (
        "footprint_baseline_mb",
        "footprint_peak_compile_mb",
        "footprint_peak_load_mb",
        "footprint_peak_predict_mb",
        "footprint_lifetime_peak_mb",
        "footprint_limit_mb",
    ):
        assert f'= "{key}"' in swift, key
    probe = swift_source("MemoryProbe.swift")
    assert "func stagePeak()" in swift_source("RunnerPolicy.swift")
    # issue 25: the ledger peak is an int64_t in xnu's task_info.h; returned as UInt64 it did not compile
    assert "guard let peak = vmInfo()?.ledger_phys_footprint_peak, peak > 0 else { return nil }" in probe
    assert "return UInt64(peak)" in probe
    runner = swift_source("BenchmarkRunner.swift")
    assert "row.footprintLimitMB = footprint + available" in runner
    assert "result.endsLaunch(of: plan)" in runner
    assert "plan.oneJobPerLaunch == true" in swift
    plan = harness.make_plan("iphone", 5, 1, [1], "none", sample_plan()["jobs"], one_job_per_launch=True)
    assert plan["one_job_per_launch"] and harness.max_launches_for(plan) == 2 * len(plan["jobs"]) + 1
    assert harness.max_launches_for({**plan, "one_job_per_launch": False}) == len(plan["jobs"]) + 1
    assert "one_job_per_launch" in swift_keys("BenchPlan.swift")
    with pytest.raises(SamExportError, match="--one-job-per-launch is for the ios_harness app"):
        BenchOptions(device="cpu", one_job_per_launch=True)
    harness_result = {"options": {"memory_metric": "phys_footprint (the figure jetsam compares), MB"}}
    assert report.memory_label(harness_result) == "peak phys_footprint MB"
    assert report.memory_label({"options": {}}) == "peak RSS MB"


def test_neural_engine_placement_per_row():
    """Issue 13 item 10: the compute plan summarized per row (share of estimated cost per device, the
    costliest ops off the Neural Engine), in the tables and the paper table's footnotes; the Swift
    summary writes the same keys."""
    from samexport.bench import report
    from samexport.coreml_placement import summarize

    placement = summarize(
        [("conv", "ane", 0.6), ("layer_norm", "gpu", 0.1), ("softmax", "cpu", 0.3), ("reshape", None, None)]
    )
    assert placement["cost_share_percent"] == {"ane": 60.0, "gpu": 10.0, "cpu": 30.0, "unknown": 0.0}
    assert placement["ops"] == {"ane": 1, "gpu": 1, "cpu": 1, "unknown": 1}
    assert [o["op"] for o in placement["off_ane"]] == ["softmax", "layer_norm", "reshape"]
    swift = swift_source("BenchResult.swift")
    for key in ("cost_share_percent", "off_ane"):
        assert f'= "{key}"' in swift
    runner = swift_source("BenchmarkRunner.swift")
    assert "MLComputePlan.load(contentsOf:" in runner and "@available(iOS 17.4, macOS 14.4, *)" in runner
    plan = sample_plan()
    ok, oom = measured_rows(plan)
    result = app_result(plan, [{**ok, "placement": placement}, oom], finished=True)
    result["device"]["label"] = "iPhone 15 Pro"
    assert "| on ANE, % of cost |" in report.to_markdown(result) and "| 60 |" in report.to_markdown(result)
    assert "iPhone 15 Pro: on the Neural Engine (share of Core ML's estimated cost" in report.paper_table(
        [result]
    )


def test_multifunction_decoders_are_measured_per_function():
    """Issue 25 (review, LOW): a job on a multifunction decoder names the function of its prompt shape, so
    the app loads that function, not the default one with the requested token count; a shape the package
    lacks is refused before anything is staged."""
    rows = [
        {
            "model": "repvit",
            "title": "RepViT-SAM",
            "family": "sam",
            "part": part,
            "points": points,
            "tokens": tokens,
            "precision": "fp16",
            "gmacs": 1.0,
            "compute_unit": "all",
            "runs": 20,
        }
        for part, points, tokens in (("encoder", None, None), ("decoder", 1, 2), ("decoder", 5, 6))
    ]
    files = {"repvit": {"encoder": "RepViTSAMEncoder.mlpackage", "decoder": "RepViTSAMDecoder.mlpackage"}}
    functions = {"repvit": {"encoder": ["main"], "decoder": ["points_2", "points_6", "points_2_batch_4"]}}
    from samexport.export.options import ConvertOptions
    from samexport.export.target import targets
    from samexport.families.sam import SAM

    options = ConvertOptions(encoder="repvit", points=(1, 5), batch=(1, 4), decoder_shapes="multifunction")
    interfaces = SAM.part_interfaces(SAM.export_shapes(options), targets()["coreml"].form(options))

    def function_of(model, part, tokens):
        return interfaces[part].function_at({"B": 1, "N": tokens}).name

    jobs = harness.plan_jobs(rows, files, functions, function_of)
    assert [job.get("function") for job in jobs] == [None, "points_2", "points_6"]
    assert "function" in swift_keys("BenchPlan.swift")
    assert [job.get("function") for job in harness.plan_jobs(rows, files)] == [None, None, None]
    lacking = r"has no function for 5 points \(6 tokens; it has points_2, points_2_batch_4\)"
    with pytest.raises(SamExportError, match=lacking):
        harness.plan_jobs(rows, files, {"repvit": {"decoder": ["points_2", "points_2_batch_4"]}}, function_of)


def test_the_real_xcode_minimum_is_checked():
    """Issue 25 (review, HIGH): MLModelConfiguration.functionName needs the iOS 18 / macOS 15 SDKs, so Xcode
    16 is the real minimum: an older one is refused in one line before a build fails on a missing symbol."""
    harness.check_xcode_version("Xcode 16.2\nBuild version 16C5032a\n")
    harness.check_xcode_version("Xcode 26.0\nBuild version 17A324\n")
    with pytest.raises(SamExportError, match="needs Xcode 16 or newer .*selects Xcode 15.4"):
        harness.check_xcode_version("Xcode 15.4\nBuild version 15F31d\n")
    with pytest.raises(SamExportError, match="did not name an Xcode"):
        harness.check_xcode_version("xcode-select: error: tool 'xcodebuild' requires Xcode\n")
    swift_kit = swift_source("SAMHarnessKit.swift")
    assert "#if compiler(<6.0)" in swift_kit and "Xcode 16 or newer" in swift_kit
    for doc in ("docs/bench.md", "ios_harness/README.md"):
        text = (ROOT / doc).read_text()
        assert "Xcode 15" not in text and "Xcode 16" in text, doc


def test_devicectl_listing_names_devices_it_cannot_use(monkeypatch):
    """Issue 25 (review, LOW): a device whose hardwareProperties is `{}` is named with the reason instead of
    vanishing, and the device listing has a timeout (a stuck CoreDevice service made bench hang)."""
    import subprocess

    from samexport.bench import ios
    from samexport.bench.backends import IPhoneHarnessBackend

    listing = {
        "result": {
            "devices": [
                {
                    "identifier": "U",
                    "deviceProperties": {"name": "New iPhone"},
                    "hardwareProperties": {},
                    "connectionProperties": {},
                },
                {
                    "identifier": "W",
                    "deviceProperties": {"name": "Watch"},
                    "hardwareProperties": {"platform": "watchOS", "reality": "physical"},
                },
            ]
        }
    }
    (unknown,) = ios.parse_devicectl(listing)
    assert unknown["name"] == "New iPhone" and not unknown["usable"]
    assert "connect it by cable" in unknown["why_not"]

    seen = {}

    def fake_run(command, timeout=None):
        seen["timeout"] = timeout
        Path(command[-1]).write_text(json.dumps(listing))
        return subprocess.CompletedProcess(command, 0, "", "")

    assert ios.list_iphones(run=fake_run) == [unknown]
    assert seen["timeout"] == ios.DEVICECTL_LIST_TIMEOUT_S

    def stuck(command, timeout=None):
        return subprocess.CompletedProcess(command, 124, "", "timed out after 60 s")

    with pytest.raises(SamExportError, match="devicectl list devices failed \\(timed out after 60 s\\)"):
        ios.list_iphones(run=stuck)
    monkeypatch.setattr(ios, "list_iphones", lambda run=None: [unknown])
    with pytest.raises(SamExportError, match="no connected iPhone.*New iPhone: devicectl knows no hardware"):
        IPhoneHarnessBackend().build(ROOT / "ios_harness", None)
