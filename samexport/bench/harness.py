"""Driving ios_harness: measure Core ML packages on an iPhone (or a Mac) through the SAMBench app.

`prepare` copies the packages and a bench plan into the harness's Models folder (any platform);
on macOS the rest builds the app with XcodeGen + xcodebuild, installs and launches it with
`xcrun devicectl` (or runs the macOS app), relaunches it after an out-of-memory kill so the
breadcrumb becomes an `oom` row, and pulls the result file, which is in the `samexport bench`
JSON schema.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

from ..errors import PlatformError, SamExportError, UsageError
from ..platforms import is_macos

PLAN_SCHEMA = "samexport.harness-plan/2"
BUNDLE_ID = "org.samexport.SAMBench"
SCHEME = "SAMBench"
RESULT_FILE = "samexport-bench.json"
SOURCE_HARNESS = Path(__file__).resolve().parents[2] / "ios_harness"


def find_harness(harness_dir: Optional[Path]) -> Path:
    """The ios_harness folder: --harness-dir, ./ios_harness, or the source checkout's."""
    candidates = [Path(harness_dir)] if harness_dir else [Path("ios_harness"), SOURCE_HARNESS]
    for candidate in candidates:
        if (candidate / "project.yml").is_file() and (candidate / "Package.swift").is_file():
            return candidate.resolve()
    raise UsageError(
        f"no ios_harness folder at {candidates[0]} (it needs project.yml and Package.swift); pass "
        "--harness-dir pointing at ios_harness/ of the samexport source tree"
    )


def plan_jobs(
    rows: List[Dict],
    files: Dict[str, Dict[str, str]],
    functions: Optional[Dict[str, Dict[str, List[str]]]] = None,
    function_of: Optional[Callable[[str, str, int], Optional[str]]] = None,
) -> List[Dict]:
    """Bench row templates (see Bench.row_template) -> the jobs BenchPlan.json lists. `functions` names each
    package's functions (model -> part -> names); a job on a multifunction package names the function of
    its prompt shape, `function_of(model, part, tokens)` (one prompt set of its token count, from the part's
    interface), which the app loads instead of the default."""
    jobs = []
    for row in rows:
        file = files[row["model"]][row["part"]]
        points = row["points"] if row["points"] is not None else "-"
        available = ((functions or {}).get(row["model"]) or {}).get(row["part"]) or []
        function = None
        if len(available) > 1:
            function = function_of(row["model"], row["part"], row["tokens"]) if function_of else None
            if function not in available:
                raise UsageError(
                    f"{file} has no function for {row['points']} points ({row['tokens']} tokens; it has "
                    f"{', '.join(available)}): convert with --points covering {row['points']}"
                )
        jobs.append(
            {
                "id": f"{Path(file).stem}|{row['part']}|{points}|{row['compute_unit']}",
                "file": file,
                **{
                    k: row[k]
                    for k in (
                        "model",
                        "title",
                        "family",
                        "part",
                        "points",
                        "tokens",
                        "precision",
                        "gmacs",
                        "compute_unit",
                    )
                },
                "runs": row["runs"],
                **({"function": function} if function else {}),
            }
        )
    return jobs


def make_plan(
    device_kind: str,
    runs: int,
    warmup: int,
    points,
    compress: str,
    jobs: List[Dict],
    one_job_per_launch: bool = False,
) -> Dict:
    from ..version import __version__

    return {
        "schema": PLAN_SCHEMA,
        "plan_id": uuid.uuid4().hex,
        "device_kind": device_kind,
        "runs": runs,
        "warmup": warmup,
        "points": list(points),
        "compress": compress,
        "samexport_version": __version__,
        "jobs": jobs,
        "one_job_per_launch": one_job_per_launch,
    }


def prepare(harness: Path, plan: Dict, packages: List[Path]) -> Path:
    """Replace the harness's Models folder with `packages` and BenchPlan.json."""
    missing = [p for p in packages if not (p / "Manifest.json").is_file()]
    if missing:
        raise UsageError(
            f"{missing[0]} is not a Core ML package; run `samexport convert --target coreml` first"
        )
    models = harness / "Models"
    staging = None
    try:
        # Staged beside Models, then moved into place: a failed copy leaves Models as it was.
        staging = Path(tempfile.mkdtemp(prefix=".samexport-models-", dir=harness))
        for package in dict.fromkeys(packages):
            shutil.copytree(package, staging / package.name)
        (staging / "BenchPlan.json").write_text(json.dumps(plan, indent=2) + "\n")
        if models.is_dir():
            shutil.rmtree(models)
        os.replace(staging, models)
    except OSError as e:
        raise UsageError(f"cannot write {models} ({e.strerror or e}); make ios_harness writable") from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return models


# -- commands ----------------------------------------------------------------------------------
@dataclass
class Build:
    """An xcodebuild of SAMBench for one platform (ios or macos), its team and destination device."""

    harness: Path
    platform: str  # "ios" or "macos"
    team: Optional[str]
    device_id: Optional[str] = None  # CoreDevice identifier: what devicectl takes
    udid: Optional[str] = None  # hardware UDID: what xcodebuild's -destination id= takes

    @property
    def derived_data(self) -> Path:
        return self.harness / "build"

    @property
    def app(self) -> Path:
        products = "Release-iphoneos" if self.platform == "ios" else "Release"
        return self.derived_data / "Build" / "Products" / products / f"{SCHEME}.app"

    def generate_command(self) -> List[str]:
        return [
            "xcodegen",
            "generate",
            "--spec",
            str(self.harness / "project.yml"),
            "--project",
            str(self.harness),
        ]

    def build_command(self) -> List[str]:
        if self.platform == "ios":
            destination = f"platform=iOS,id={self.udid}" if self.udid else "generic/platform=iOS"
        else:
            destination = "platform=macOS,arch=arm64"
        command = [
            "xcodebuild",
            "-project",
            str(self.harness / "SAMHarness.xcodeproj"),
            "-scheme",
            SCHEME,
            "-configuration",
            "Release",
            "-destination",
            destination,
            "-derivedDataPath",
            str(self.derived_data),
            "-allowProvisioningUpdates",
            "-allowProvisioningDeviceRegistration",  # a phone Xcode has never seen gets a profile
            "build",
        ]
        if self.team:
            command.insert(-1, f"DEVELOPMENT_TEAM={self.team}")
        elif self.platform == "macos":
            command.insert(-1, "CODE_SIGN_IDENTITY=-")  # ad-hoc: XcodeGen's preset is the iOS identity
        return command


def devicectl_install(device_id: str, app: Path) -> List[str]:
    return ["xcrun", "devicectl", "device", "install", "app", "--device", device_id, str(app)]


def devicectl_launch(device_id: str) -> List[str]:
    return [
        "xcrun",
        "devicectl",
        "device",
        "process",
        "launch",
        "--device",
        device_id,
        "--terminate-existing",
        BUNDLE_ID,
    ]


def devicectl_copy_from(device_id: str, domain: List[str], source: str, destination: Path) -> List[str]:
    """`devicectl device copy from` a file of `domain` (`--domain-type ...` and its options)."""
    return [
        "xcrun",
        "devicectl",
        "device",
        "copy",
        "from",
        "--device",
        device_id,
        *domain,
        "--source",
        source,
        "--destination",
        str(destination),
    ]


def devicectl_pull(device_id: str, destination: Path) -> List[str]:
    """The app's result file from its Documents folder."""
    domain = ["--domain-type", "appDataContainer", "--domain-identifier", BUNDLE_ID]
    return devicectl_copy_from(device_id, domain, f"Documents/{RESULT_FILE}", destination)


def devicectl_processes(device_id: str, destination: Path) -> List[str]:
    return [
        "xcrun",
        "devicectl",
        "device",
        "info",
        "processes",
        "--device",
        device_id,
        "--json-output",
        str(destination),
    ]


def app_is_running(processes_json: Dict) -> bool:
    """Whether `devicectl device info processes --json-output` lists the SAMBench executable."""
    running = processes_json.get("result", {}).get("runningProcesses", [])
    return any(str(p.get("executable", "")).rstrip("/").endswith(f"{SCHEME}.app/{SCHEME}") for p in running)


def mac_app_command(app: Path, output: Path) -> List[str]:
    return [str(app / "Contents" / "MacOS" / SCHEME), "--output", str(output), "--exit-when-done"]


# -- results -----------------------------------------------------------------------------------
def read_result(path: Path, plan: Dict) -> Optional[Dict]:
    """The app's result file when it belongs to `plan` (None before the app wrote one)."""
    from .report import READABLE_SCHEMAS, upgrade_result

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if (
        data.get("schema") not in READABLE_SCHEMAS
        or data.get("harness", {}).get("plan_id") != plan["plan_id"]
    ):
        return None
    return upgrade_result(data)


def finish_result(data: Dict, plan: Dict, label: Optional[str], peak_gflops: Optional[float]) -> Dict:
    """Rows in plan order, a row for any job the app never reached, the device label samexport knows."""
    by_job = {row.get("job_id"): row for row in data["rows"]}
    rows = []
    for job in plan["jobs"]:
        row = by_job.get(job["id"])
        if row is None:
            row = {
                **{k: v for k, v in job.items() if k not in ("id", "file")},
                "job_id": job["id"],
                "file": job["file"],
                "status": "error",
                "error": "not measured: the app stopped before this job",
            }
        row.setdefault("compute_floor_ms", None)
        if peak_gflops and row.get("gmacs"):
            row["compute_floor_ms"] = row["gmacs"] * 2 / peak_gflops * 1e3
        rows.append(row)
    data["rows"] = rows
    if label:
        data["device"]["label"] = label
    return data


# -- running -----------------------------------------------------------------------------------
Runner = Callable[[List[str]], subprocess.CompletedProcess]


# A stuck CoreDevice tunnel makes devicectl wait forever; no devicectl step of ours takes this long.
DEVICECTL_TIMEOUT_S = 300.0


def run_command(command: List[str], timeout: Optional[float] = None) -> subprocess.CompletedProcess:
    """Run a tool. devicectl calls get DEVICECTL_TIMEOUT_S, and their timeout is a failed run (status 124)."""
    if command[:2] != ["xcrun", "devicectl"]:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    timeout = timeout or DEVICECTL_TIMEOUT_S
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        message = f"{' '.join(command[:4])} timed out after {timeout:.0f} s (a stuck device tunnel?)"
        return subprocess.CompletedProcess(command, 124, "", message)


def check(proc: subprocess.CompletedProcess, what: str, fix: str) -> None:
    """A non-zero exit becomes a one-line error; a kill by signal (negative status) is left to the caller."""
    if proc.returncode > 0:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-1:] or ["no output"]
        raise SamExportError(f"{what} failed ({tail[0][:240]}); {fix}")


def require_tools(device: str) -> None:
    if not is_macos():
        needs = (
            "macOS with Xcode and a connected iPhone"
            if device == "iphone"
            else "macOS with Xcode on Apple silicon"
        )
        raise PlatformError(
            f"--device {device} through ios_harness needs {needs}; on this machine use --device cpu, "
            "or --prepare-only to stage the packages for Xcode"
        )
    for tool, fix in (
        ("xcodebuild", f"install Xcode {MIN_XCODE} or newer and run xcode-select -s"),
        ("xcodegen", "install XcodeGen: brew install xcodegen"),
    ):
        if shutil.which(tool) is None:
            raise PlatformError(f"{tool} not found; {fix}")
    try:
        version = run_command(["xcodebuild", "-version"], timeout=60).stdout
    except subprocess.TimeoutExpired:
        raise PlatformError("xcodebuild -version did not answer within 60 s; check xcode-select -p") from None
    check_xcode_version(version)


# SAMHarnessKit names MLModelConfiguration.functionName, which only the iOS 18 / macOS 15 SDKs have
MIN_XCODE = 16


def check_xcode_version(version_output: str) -> None:
    """`xcodebuild -version` says "Xcode 16.2" first; an older Xcode cannot build ios_harness."""
    words = (version_output or "").split()
    try:
        major = int(words[1].split(".")[0]) if words[:1] == ["Xcode"] else None
    except (IndexError, ValueError):
        major = None
    if major is None:
        raise PlatformError(
            f"xcodebuild -version did not name an Xcode ({version_output.strip()[:80]!r}); "
            "run xcode-select -s with a full Xcode, not the command line tools alone"
        )
    if major < MIN_XCODE:
        raise PlatformError(
            f"ios_harness needs Xcode {MIN_XCODE} or newer (the iOS 18 / macOS 15 SDKs); "
            f"this Mac selects Xcode {words[1]}: install a newer one and run xcode-select -s"
        )


def build(spec: Build, run: Runner = run_command) -> Path:
    check(run(spec.generate_command()), "xcodegen generate", "check ios_harness/project.yml")
    check(
        run(spec.build_command()),
        "xcodebuild",
        "set your team ID (--team or SAMEXPORT_TEAM_ID; see ios_harness/README.md, Signing)",
    )
    if not spec.app.is_dir():
        raise SamExportError(f"xcodebuild reported success but {spec.app} is missing")
    return spec.app


def devicectl_crash_logs(device_id: str, destination: Path) -> List[str]:
    return [
        "xcrun",
        "devicectl",
        "device",
        "info",
        "files",
        "--device",
        device_id,
        "--domain-type",
        "systemCrashLogs",
        "--json-output",
        str(destination),
    ]


def devicectl_copy_crash_log(device_id: str, name: str, destination: Path) -> List[str]:
    return devicectl_copy_from(device_id, ["--domain-type", "systemCrashLogs"], name, destination)


def listed_reports(listing) -> List[str]:
    """Report names (.ips) anywhere in devicectl's `info files` JSON: the listing's exact layout is not
    documented, so every string under a name/path key that ends in .ips counts."""
    found: List[str] = []
    stack = [listing]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if (
                    key in ("name", "relativePath", "path")
                    and isinstance(value, str)
                    and value.endswith(".ips")
                ):
                    found.append(value)
                else:
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    return sorted(set(found))


def new_jetsam_kills(device: str, seen: set, folder: Path, run: Runner, pull: bool = True) -> List[Dict]:
    """Kills of SAMBench in JetsamEvent reports that appeared since the names in `seen` (updated); with
    `pull` False only the names are recorded (the reports already there before a run)."""
    from .jetsam import JETSAM_PREFIX, kill_of, parse_report

    listing = folder / "crashlogs.json"
    listing.unlink(missing_ok=True)
    if run(devicectl_crash_logs(device, listing)).returncode != 0:
        return []
    try:
        names = listed_reports(json.loads(listing.read_text()))
    except (OSError, ValueError):
        return []
    kills = []
    for name in names:
        if name in seen:
            continue
        seen.add(name)
        if not pull or not Path(name).name.startswith(JETSAM_PREFIX):
            continue
        local = folder / Path(name).name
        if run(devicectl_copy_crash_log(device, name, local)).returncode != 0:
            continue
        try:
            report = parse_report(local.read_text())
        except OSError:
            continue
        kill = report and kill_of(report, file=Path(name).name)
        if kill:
            kills.append(kill)
    return kills


def max_launches_for(plan: Dict) -> int:
    """Launches before the driver gives up: one per kill, plus one per job with one job per launch."""
    jobs = len(plan["jobs"])
    return (2 * jobs if plan.get("one_job_per_launch") else jobs) + 1


def run_on_iphone(
    spec: Build,
    plan: Dict,
    timeout_s: float,
    poll_s: float = 10.0,
    run: Runner = run_command,
    sleep: Callable[[float], None] = time.sleep,
    say: Callable[[str], None] = lambda _: None,
) -> Dict:
    """Install, launch, poll the result file; relaunch after a kill until every job has a row."""
    device = spec.device_id
    check(
        run(devicectl_install(device, spec.app)), "devicectl install", "unlock the iPhone and trust this Mac"
    )
    from .jetsam import attach_evidence

    launches, max_launches = 0, max_launches_for(plan)
    deadline = time.monotonic() + timeout_s
    kills: List[Optional[Dict]] = []  # per relaunch after a kill: the JetsamEvent naming SAMBench, or None
    with tempfile.TemporaryDirectory() as tmp:
        pulled, processes = Path(tmp) / RESULT_FILE, Path(tmp) / "processes.json"
        seen: set = set()
        new_jetsam_kills(device, seen, Path(tmp), run, pull=False)  # reports from before this run
        while True:
            if launches == 0 or not _running(device, processes, run):
                if launches >= max_launches:
                    raise SamExportError(
                        f"SAMBench stopped {launches} times without finishing; see the device log"
                    )
                if launches:
                    found = new_jetsam_kills(device, seen, Path(tmp), run)
                    if found or not plan.get("one_job_per_launch"):  # there, exits are planned
                        kills.append(found[-1] if found else None)
                    say(
                        "SAMBench is not running (killed?); relaunching to record it and continue"
                        + (f" ({found[-1]['reason']} in {found[-1]['file']})" if found else "")
                    )
                check(
                    run(devicectl_launch(device)),
                    "devicectl launch",
                    "unlock the iPhone and keep it unlocked",
                )
                launches += 1
            sleep(poll_s)
            pulled.unlink(missing_ok=True)
            if run(devicectl_pull(device, pulled)).returncode == 0:
                data = read_result(pulled, plan)
                if data and data["harness"].get("finished"):
                    attach_evidence(data["rows"], kills)
                    data["harness"]["jetsam_kills"] = kills
                    return data
                if data:
                    say(f"{len(data['rows'])}/{len(plan['jobs'])} parts measured")
            if time.monotonic() > deadline:
                raise SamExportError(
                    f"no finished result after {timeout_s:.0f} s; the partial result stays in the "
                    "app's Documents folder"
                )


def _running(device: str, processes: Path, run: Runner) -> bool:
    proc = run(devicectl_processes(device, processes))
    if proc.returncode != 0:
        return True  # cannot tell: keep polling rather than relaunch over a running benchmark
    try:
        return app_is_running(json.loads(processes.read_text()))
    except (OSError, ValueError):
        return True


def run_on_mac(
    spec: Build,
    plan: Dict,
    timeout_s: float,
    run: Optional[Runner] = None,
    say: Callable[[str], None] = lambda _: None,
) -> Dict:
    """Run the macOS app until it exits; relaunch after a kill until every job has a row."""
    run = run or (lambda command: run_command(command, timeout=timeout_s))
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp)
        for _ in range(max_launches_for(plan)):
            try:
                proc = run(mac_app_command(spec.app, output))
            except subprocess.TimeoutExpired:
                raise SamExportError(f"SAMBench did not finish within {timeout_s:.0f} s") from None
            data = read_result(output / RESULT_FILE, plan)
            if data and data["harness"].get("finished"):
                from .jetsam import attach_evidence

                attach_evidence(data["rows"], [])  # on a Mac the driver reads no JetsamEvent reports
                return data
            check(proc, "SAMBench", "see its message")  # a non-zero exit of its own: a plan or bundle problem
            say(
                f"SAMBench ended with status {proc.returncode} before finishing (killed?); "
                "relaunching to record it"
            )
        raise SamExportError("SAMBench kept stopping without finishing")
