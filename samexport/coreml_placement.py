"""Where Core ML runs each op of a package: its compute plan (`MLComputePlan`, macOS 14.4+/iOS 17.4+).

Core ML falls back from the Neural Engine to the GPU or CPU silently; the plan states, per op, the
preferred device and an estimated share of the model's cost. Summarized per row as the share of the
estimated cost on each device and the costliest ops that are not on the Neural Engine. The harness
app computes the same summary in Swift (BenchmarkRunner.placement) under the same keys.
"""

from __future__ import annotations

from typing import Dict, Iterable, Optional, Tuple

DEVICES = ("ane", "gpu", "cpu")
OFF_ANE_LISTED = 10


def summarize(ops: Iterable[Tuple[str, Optional[str], Optional[float]]]) -> Dict:
    """(op type, preferred device or None, estimated cost weight or None) per op -> the placement record."""
    cost = {d: 0.0 for d in (*DEVICES, "unknown")}
    count = {d: 0 for d in (*DEVICES, "unknown")}
    off_ane = []
    for op_type, device, weight in ops:
        key = device if device in DEVICES else "unknown"
        count[key] += 1
        cost[key] += weight or 0.0
        if key != "ane":
            off_ane.append({"op": op_type, "device": key, "cost": round(weight or 0.0, 5)})
    total = sum(cost.values())
    share = {d: round(100 * c / total, 1) if total else None for d, c in cost.items()}
    off_ane.sort(key=lambda o: -o["cost"])
    return {
        "cost_share_percent": share,
        "ops": count,
        "off_ane": off_ane[:OFF_ANE_LISTED],
        "source": "MLComputePlan: preferred device and estimated cost per op",
    }


def ane_share(placement: Optional[Dict]) -> Optional[float]:
    return (placement or {}).get("cost_share_percent", {}).get("ane")


def compute_plan(compiled_path: str, compute_units: str = "ALL") -> Dict:
    """The placement record of a compiled model (.mlmodelc), from coremltools' MLComputePlan (macOS)."""
    import coremltools as ct
    from coremltools.models.compute_device import (
        MLCPUComputeDevice,
        MLGPUComputeDevice,
        MLNeuralEngineComputeDevice,
    )
    from coremltools.models.compute_plan import MLComputePlan

    plan = MLComputePlan.load_from_path(compiled_path, compute_units=getattr(ct.ComputeUnit, compute_units))
    program = plan.model_structure.program
    if program is None:
        return {"error": "not an ML program"}
    names = {MLNeuralEngineComputeDevice: "ane", MLGPUComputeDevice: "gpu", MLCPUComputeDevice: "cpu"}

    def ops():
        for op in program.functions["main"].block.operations:
            if op.operator_name == "const":
                continue
            usage = plan.get_compute_device_usage_for_mlprogram_operation(op)
            cost = plan.get_estimated_cost_for_mlprogram_operation(op)
            device = next(
                (
                    n
                    for cls, n in names.items()
                    if usage is not None and isinstance(usage.preferred_compute_device, cls)
                ),
                None,
            )
            yield op.operator_name, device, cost.weight if cost is not None else None

    return summarize(ops())


def placement_or_reason(compiled_path: str, compute_units: str = "ALL") -> Dict:
    """`compute_plan`, or {"error": why} where there is none (MLComputePlan needs macOS 14.4+)."""
    try:
        return compute_plan(compiled_path, compute_units)
    except Exception as e:  # coremltools raises bare Exceptions where the runtime lacks the API
        return {"error": f"{type(e).__name__}: {str(e)[:200]}"}
