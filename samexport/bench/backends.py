"""Where `samexport bench` measures: one backend per --device, registered by name.

- `cpu`, `cuda`: ONNX exports with onnxruntime, each part in a child process (see `child`).
- `m1`: Core ML packages with coremltools on an Apple-silicon Mac, each part in a child process.
- `iphone` (and `m1 --via-harness`): Core ML packages inside the ios_harness app (see `harness`).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Dict, Optional, Tuple

import numpy as np

from ..errors import PlatformError
from ..platforms import cpu_model, is_apple_silicon
from . import device_profiles

if TYPE_CHECKING:
    from .harness import Build


class Backend(ABC):
    """How one device is measured: the export target it reads, the platform it needs, what it reports."""

    device: ClassVar[str]  # the --device value
    target: ClassVar[str]  # the export target it measures
    in_harness: ClassVar[bool] = False

    @abstractmethod
    def check_platform(self) -> None:
        """Fail fast (exit 2, one line) where this device cannot be measured from here."""

    def precision(self, compress: str) -> str:
        return "fp16"

    def compute_units(self, requested: Tuple[str, ...]) -> Tuple[str, ...]:
        return requested

    def device_info(self, progress) -> Dict:
        return {"kind": self.device, "label": self.device}

    def worker_job(self, unit: str) -> Dict:
        """What the child worker needs beyond the file and the prompt size."""
        return {}


class OnnxRuntimeBackend(Backend):
    """ONNX exports run by onnxruntime with the given execution providers (cpu, cuda)."""

    target = "onnx"

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
        with progress.status("measuring this machine's float32 GEMM peak"):
            peak = measure_cpu_peak_gflops()
        return {
            "kind": "cpu",
            "label": f"CPU (onnxruntime), {cpu_model()}",
            "peak_gflops": round(peak, 1),
            "peak_measured_here": True,
            "peak_source": "float32 GEMM 2048x2048 with numpy on all cores, best of ~1 s of runs",
        }

    def worker_job(self, unit: str) -> Dict:
        return {"backend": "onnx", "providers": list(self.providers)}


class CoreMLBackend(Backend):
    """Core ML packages predicted through coremltools on an Apple-silicon Mac, per compute unit."""

    device = "m1"
    target = "coreml"

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
        return {"backend": "coreml", "compute_units": unit}


class HarnessBackend(Backend):
    """The ios_harness app (see `harness`): staged plan and packages, an xcodebuild, a run, its result."""

    target = "coreml"
    in_harness = True

    def check_platform(self) -> None:
        from .harness import require_tools

        require_tools(self.device)

    @abstractmethod
    def build(self, root: Path, team: Optional[str]) -> Tuple["Build", str]:
        """The build to make for this device and the device's label in results."""

    @abstractmethod
    def run(self, build: "Build", plan: Dict, timeout_s: float, say) -> Dict:
        """Run the built app until the plan is finished; its result data."""


class IPhoneHarnessBackend(HarnessBackend):
    """SAMBench on the first connected iPhone, installed and launched with devicectl."""

    device = "iphone"

    def build(self, root: Path, team: Optional[str]) -> Tuple["Build", str]:
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

    def build(self, root: Path, team: Optional[str]) -> Tuple["Build", str]:
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
    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        a @ a
        best = max(best, 2 * 2048**3 / (time.perf_counter() - start) / 1e9)
    return best


_BACKENDS: Dict[Tuple[str, bool], Backend] = {}


def register_backend(backend: Backend) -> Backend:
    key = (backend.device, backend.in_harness)
    if key in _BACKENDS:
        raise ValueError(f"bench backend for --device {backend.device} is registered twice")
    _BACKENDS[key] = backend
    return backend


def devices() -> Tuple[str, ...]:
    return tuple(dict.fromkeys(device for device, _ in _BACKENDS))


def backend_for(device: str, via_harness: bool) -> Optional[Backend]:
    """The backend for --device (through ios_harness when asked, or when that is the only way)."""
    return _BACKENDS.get((device, via_harness)) or _BACKENDS.get((device, True))


register_backend(OnnxRuntimeBackend("cpu", ("CPUExecutionProvider",)))
register_backend(OnnxRuntimeBackend("cuda", ("CUDAExecutionProvider", "CPUExecutionProvider")))
register_backend(CoreMLBackend())
register_backend(MacHarnessBackend())
register_backend(IPhoneHarnessBackend())
