"""Where `samexport bench` measures: one backend per --device, registered by name, of two kinds.

- A `HostBackend` measures on this machine: each part in a child process (see `child`) by the measure
  function registered under its name in `worker` (inputs from the part's description). `cpu`, `cuda`:
  ONNX exports with onnxruntime, and on `cpu` LiteRT exports with XNNPACK; `m1`: Core ML packages with
  coremltools on an Apple-silicon Mac, Core AI assets on macOS 27.
- A `DeviceAppBackend` measures inside an app on a device: stage the plan and files, build, run (install,
  launch, pull the result). `iphone` (and `m1 --via-harness`): the ios_harness app (see `harness`); an
  Android app would be one more implementation.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Dict, List, Optional, Tuple

from ..errors import PlatformError, UsageError
from ..platforms import cpu_model, is_apple_silicon
from . import device_profiles

if TYPE_CHECKING:
    from .harness import Build


class Backend(ABC):
    """How one device is measured: the export target it reads, the platform it needs, what it reports."""

    device: ClassVar[str]  # the --device value
    target: ClassVar[str]  # the export target it measures
    in_app: ClassVar[bool] = False  # measured inside a device app (DeviceAppBackend)

    def check_models(self, names) -> None:  # noqa: B027 (optional hook)
        """Refuse, before any work, models this backend cannot measure."""

    @abstractmethod
    def check_platform(self) -> None:
        """Fail fast (exit 2, one line) where this device cannot be measured from here."""

    def precision(self, compress: str) -> str:
        return "fp16"

    def compute_units(self, requested: Tuple[str, ...]) -> Tuple[str, ...]:
        return requested

    def device_info(self, progress) -> Dict:
        return {"kind": self.device, "label": self.device}


class HostBackend(Backend):
    """Measured on this machine, one part per child process, by `worker.MEASURES[measure]`."""

    measure: ClassVar[str]

    def worker_job(self, unit: str) -> Dict:
        """What the child worker needs beyond the file, the part's inputs and the prompt size."""
        return {"backend": self.measure}


class OnnxRuntimeBackend(HostBackend):
    """ONNX exports run by onnxruntime with the given execution providers (cpu, cuda)."""

    target = "onnx"
    measure = "onnx"

    def __init__(self, device: str, providers: Tuple[str, ...]) -> None:
        self.device = device
        self.providers = providers

    def check_platform(self) -> None:
        import onnxruntime as ort

        if not set(self.providers) <= set(ort.get_available_providers()):
            raise PlatformError(
                f"--device {self.device} needs onnxruntime-gpu with {self.providers[0]}; this "
                f"onnxruntime offers {', '.join(ort.get_available_providers())}; use --device cpu"
            )

    def precision(self, compress: str) -> str:
        return "int8" if compress == "int8" else "fp32"

    def compute_units(self, requested: Tuple[str, ...]) -> Tuple[str, ...]:
        return (self.device,)

    def device_info(self, progress) -> Dict:
        if self.device != "cpu":
            return {"kind": self.device, "label": f"{self.device.upper()} (onnxruntime)"}
        return cpu_device_info(progress, "onnxruntime")

    def worker_job(self, unit: str) -> Dict:
        return {**super().worker_job(unit), "providers": list(self.providers)}


class LiteRTBackend(HostBackend):
    """`.tflite` exports run by LiteRT's interpreter with the XNNPACK CPU delegate (Android's CPU path) on
    every core of this machine (`--device cpu --target litert`)."""

    device = "cpu"
    target = "litert"
    measure = "litert"

    def check_platform(self) -> None:
        """ai-edge-litert is a dependency: every platform samexport installs on runs it."""

    def precision(self, compress: str) -> str:
        """The arithmetic measured: XNNPACK's float32 inference (the default of an app), whatever the
        weights are stored in."""
        return "int8" if compress == "int8" else "fp32 (fp16 weights)"

    def threads(self) -> int:
        import os

        return os.cpu_count() or 1

    def device_info(self, progress) -> Dict:
        return cpu_device_info(progress, f"LiteRT XNNPACK, {self.threads()} threads")

    def worker_job(self, unit: str) -> Dict:
        return {**super().worker_job(unit), "threads": self.threads()}


def cpu_device_info(progress, runtime: str) -> Dict:
    """This machine's CPU as a bench device: its model and its measured float32 GEMM peak."""
    with progress.status("measuring this machine's float32 GEMM peak"):
        peak = measure_cpu_peak_gflops()
    return {
        "kind": "cpu",
        "label": f"CPU ({runtime}), {cpu_model()}",
        "peak_gflops": round(peak, 1),
        "peak_measured_here": True,
        "peak_source": "float32 GEMM 2048x2048 with numpy on all cores, best of ~1 s of runs",
    }


class CoreMLBackend(HostBackend):
    """Core ML packages predicted through coremltools on an Apple-silicon Mac, per compute unit."""

    device = "m1"
    target = "coreml"
    measure = "coreml"

    def check_platform(self) -> None:
        if not is_apple_silicon():
            raise PlatformError(
                "--device m1 needs macOS on Apple silicon (Core ML); on this machine use "
                "--device cpu (onnxruntime)"
            )

    def device_info(self, progress) -> Dict:
        info: Dict = {"kind": "m1", "label": f"Core ML, {cpu_model()}"}
        info.update(neural_engine_peak(cpu_model()))
        return info

    def worker_job(self, unit: str) -> Dict:
        return {**super().worker_job(unit), "compute_units": unit}


class DeviceAppBackend(Backend):
    """Measured inside an app on a device: `stage`, `build`, `run` (install, launch, pull its result)."""

    in_app = True

    @abstractmethod
    def find_app(self, app_dir: Optional[Path]) -> Path:
        """The app's source folder (`--harness-dir`, or where samexport keeps it)."""

    @abstractmethod
    def stage(self, root: Path, plan: Dict, files: List[Path]) -> Path:
        """Put the plan and the files to measure where the build bundles them; returns that folder."""

    @abstractmethod
    def build(self, root: Path, team: Optional[str]) -> Tuple[object, str]:
        """Build the app for this device; the build and the device's label in results."""

    @abstractmethod
    def run(self, build, plan: Dict, timeout_s: float, say) -> Dict:
        """Install, launch until the plan is finished, pull: the app's result data."""

    def finish(self, data: Dict, plan: Dict, label: str, peak_gflops: Optional[float]) -> Dict:
        """The bench result from the app's result data."""
        from .harness import finish_result

        return finish_result(data, plan, label, peak_gflops)


class CoreAIBackend(HostBackend):
    """Core AI assets run by the OS runtime of macOS 27 on Apple silicon (`--device m1 --target coreai`)."""

    device = "m1"
    target = "coreai"
    measure = "coreai"

    def check_platform(self) -> None:
        import platform

        major = int((platform.mac_ver()[0] or "0").split(".")[0])
        if not is_apple_silicon() or major < 27:
            raise PlatformError(
                "--device m1 --target coreai needs macOS 27 on Apple silicon (Core AI's OS runtime); here "
                "Apple's runtime is its reference CPU path, which validates exports but measures nothing a "
                "device does: use --device cpu (onnxruntime)"
            )

    def precision(self, compress: str) -> str:
        return "fp32"

    def device_info(self, progress) -> Dict:
        return {"kind": "m1", "label": f"Core AI, {cpu_model()}", **neural_engine_peak(cpu_model())}


class HarnessBackend(DeviceAppBackend):
    """The ios_harness app (see `harness`): staged plan and packages, an xcodebuild, a run, its result."""

    target = "coreml"

    def check_models(self, names) -> None:
        """The app runs SAM-style image encoder + prompt decoder packages."""
        from ..families.registry import get_spec
        from ..families.sam_style import SamStyleParts

        beyond = [n for n in names if not isinstance(get_spec(n).family, SamStyleParts)]
        if beyond:
            raise UsageError(
                f"the ios_harness app runs SAM-style encoder + decoder packages; {', '.join(beyond)} has "
                "other parts and is not in it yet: measure it with --device m1 (host Core ML) or --device cpu"
            )

    def check_platform(self) -> None:
        from .harness import require_tools

        require_tools(self.device)

    def find_app(self, app_dir: Optional[Path]) -> Path:
        from .harness import find_harness

        return find_harness(app_dir)

    def stage(self, root: Path, plan: Dict, files: List[Path]) -> Path:
        from .harness import prepare

        return prepare(root, plan, files)

    def build(self, root: Path, team: Optional[str]) -> Tuple["Build", str]:
        build, label = self.app_build(root, team)
        from .harness import build as xcodebuild

        xcodebuild(build)
        return build, label

    @abstractmethod
    def app_build(self, root: Path, team: Optional[str]) -> Tuple["Build", str]:
        """The xcodebuild to make for this device and the device's label in results."""


class IPhoneHarnessBackend(HarnessBackend):
    """SAMBench on the first connected iPhone, installed and launched with devicectl."""

    device = "iphone"

    def app_build(self, root: Path, team: Optional[str]) -> Tuple["Build", str]:
        from .harness import Build
        from .ios import list_iphones

        listed = list_iphones()
        phones = [d for d in listed if d["usable"]]
        if not phones:
            others = "; ".join(
                f"{d['name']}: {d.get('why_not', 'not paired, or unavailable')}" for d in listed
            )
            raise PlatformError(
                "no connected iPhone: connect one, unlock it, trust this Mac, and check "
                "`xcrun devicectl list devices`" + (f" (listed: {others})" if others else "")
            )
        phone = phones[0]
        label = f"Core ML, {phone['model'] or 'iPhone'} ({phone['name']})"
        return Build(root, "ios", team, device_id=phone["identifier"], udid=phone["udid"] or None), label

    def run(self, build: "Build", plan: Dict, timeout_s: float, say) -> Dict:
        from .harness import run_on_iphone

        return run_on_iphone(build, plan, timeout_s, say=say)


class MacHarnessBackend(HarnessBackend):
    """SAMBench as a macOS app on this Mac (`--device m1 --via-harness`)."""

    device = "m1"

    def device_info(self, progress) -> Dict:
        return {"kind": self.device, "label": self.device, **neural_engine_peak(cpu_model())}

    def app_build(self, root: Path, team: Optional[str]) -> Tuple["Build", str]:
        from .harness import Build

        return Build(root, "macos", team), f"Core ML, {cpu_model()} (ios_harness app)"

    def run(self, build: "Build", plan: Dict, timeout_s: float, say) -> Dict:
        from .harness import run_on_mac

        return run_on_mac(build, plan, timeout_s, say=say)


def neural_engine_peak(chip_name: str) -> Dict:
    """The Neural Engine rate Apple states for the Mac chip named, where a profile knows it."""
    profile = next(
        (
            d
            for d in device_profiles.load()["devices"].values()
            if d["kind"] == "mac" and d["chip"] in chip_name
        ),
        None,
    )
    if not profile:
        return {}
    return {
        "peak_gflops": profile["neural_engine_tops"] * 1e3,
        "peak_source": f"{profile['chip']} Neural Engine {profile['neural_engine_tops']} TOPS (Apple)",
    }


def measure_cpu_peak_gflops(seconds: float = 1.0) -> float:
    """Best float32 GEMM rate of this machine (numpy BLAS, all cores), for the compute floor."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        a @ a
        best = max(best, 2 * 2048**3 / (time.perf_counter() - start) / 1e9)
    return best


_BACKENDS: Dict[Tuple[str, bool, str], Backend] = {}


def register_backend(backend: Backend) -> Backend:
    key = (backend.device, backend.in_app, backend.target)
    if key in _BACKENDS:
        raise ValueError(f"bench backend for --device {backend.device} is registered twice")
    _BACKENDS[key] = backend
    return backend


def unregister_backend(device: str) -> None:
    for key in [k for k in _BACKENDS if k[0] == device]:
        _BACKENDS.pop(key)


def devices() -> Tuple[str, ...]:
    return tuple(dict.fromkeys(device for device, _, _ in _BACKENDS))


def device_help() -> str:
    """`--device` values and the targets each measures (from the registry), for help texts."""
    return ", ".join(f"{d} ({', '.join(backends_for(d, False))})" for d in devices())


def backends_for(device: str, via_harness: bool) -> Dict[str, Backend]:
    """target -> backend measuring it on `device` (through ios_harness when asked, or when that is the
    only way), the device's default (first registered) first."""
    found: Dict[str, Backend] = {}
    for in_app in (via_harness, True):
        for (d, app, target), backend in _BACKENDS.items():
            if d == device and app == in_app:
                found.setdefault(target, backend)
        if found:
            return found
    return found


register_backend(OnnxRuntimeBackend("cpu", ("CPUExecutionProvider",)))
register_backend(OnnxRuntimeBackend("cuda", ("CUDAExecutionProvider", "CPUExecutionProvider")))
register_backend(LiteRTBackend())
register_backend(CoreMLBackend())
register_backend(CoreAIBackend())
register_backend(MacHarnessBackend())
register_backend(IPhoneHarnessBackend())
