"""`build_video_predictor`: a memory-bank tracker with the official SAM 2 video predictor's methods
(`init_state`, `add_new_points_or_box`, `propagate_in_video`, `reset_state`) over PyTorch or any export."""

from __future__ import annotations

from pathlib import Path

from .errors import UsageError
from .families.registry import get_spec


def build_video_predictor(
    name: str = "edgetam",
    checkpoint: str | Path | None = None,
    backend: str = "torch",
    manifest: str | Path | None = None,
    method: str = "auto",
    config=None,
):
    """The tracker of registry model `name`: on PyTorch (`backend="torch"`, the official `checkpoint` or the
    fixture weights) or on an export (`backend` a target name, `manifest` its export.json)."""
    spec = get_spec(name)
    if backend == "torch":
        if manifest is not None:
            raise UsageError(
                "manifest= names an export; give backend= its target (onnx, litert, coreai, coreml)"
            )
        import warnings

        from .zoo import RandomWeightsWarning, torch_session

        session, notes = torch_session(spec.name, checkpoint)
        for note in notes:  # what build_model says: the fixture fill, not the official weights
            warnings.warn(note, RandomWeightsWarning, stacklevel=2)
    else:
        if manifest is None:
            raise UsageError(f"backend {backend!r} runs an export: give manifest= its export.json")
        if checkpoint is not None:
            raise UsageError("checkpoint= is for backend='torch'; an export carries its weights")
        from .export.runtimes import open_session

        session = open_session(Path(manifest), backend, method)
        if session.model != spec.name:
            session.close()
            raise UsageError(f"{manifest} is an export of {session.model}, not {spec.name}")
    predictor = spec.family.video_predictor(session, config)
    if predictor is None:
        session.close()
        raise UsageError(f"{spec.name} has no memory-bank tracker; choose edgetam")
    return predictor
