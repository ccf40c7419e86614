"""Loading official checkpoints safely, and the fixture weights (the parity fixtures' deterministic fill)
used without one."""

from __future__ import annotations

import functools
import math
import pickle
import re
import zlib
from pathlib import Path
from typing import Dict, Mapping, Tuple

import torch
from torch import nn

from .errors import CheckpointError, first_line
from .families.registry import ModelSpec, get_spec, list_models

StateDict = Dict[str, torch.Tensor]


@functools.lru_cache(maxsize=None)
def _meta_state(name: str) -> Dict[str, Tuple[Tuple[int, ...], bool]]:
    """Key -> (shape, floating point) of the official state_dict of a registry model (built on the meta
    device)."""
    model = get_spec(name).build_meta()
    return {k: (tuple(v.shape), v.is_floating_point()) for k, v in model.state_dict().items()}


def expected_layout(name: str) -> Dict[str, Tuple[int, ...]]:
    """Key -> shape of the official state_dict of a registry model."""
    return {k: shape for k, (shape, _) in _meta_state(name).items()}


# Leading bytes of files people pass by mistake, and of the two formats torch.save writes.
OTHER_FORMATS = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"%PDF": "a PDF document",
    b"\x1f\x8b": "a gzip archive",
    b"\x7fELF": "an executable",
}
TORCH_ZIP = b"PK\x03\x04"
# torch's legacy (pre-1.6) format opens with its magic number pickled as a long (protocol 2).
TORCH_LEGACY = b"\x80\x02\x8a\x0a" + bytes.fromhex("6cfc9c46f9206aa85019")
FIX = "pass the official .pt/.pth (or a .safetensors) checkpoint"
# Where official files keep the state_dict: segment-anything style {"model": ...}, mmengine
# {"state_dict": ...} (with "meta" and training state beside it, which are not read).
WRAPPERS = ("model", "state_dict")


def read_checkpoint(path: str | Path, spec: ModelSpec | None = None) -> StateDict:
    """Read a checkpoint without executing code: a torch file (a plain state_dict or {"model": ...}, read
    with weights_only=True, memory-mapped) or a .safetensors file (read with the safetensors library).
    With `spec` its names, shapes and dtypes are checked against the official layout before any tensor
    is materialised (a safetensors header is read alone first), so a small file that declares huge
    tensors costs nothing."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a file; {FIX}")
    with open(path, "rb") as f:
        head = f.read(16)
    if path.suffix == ".safetensors" or _is_safetensors(head):
        if spec is not None:  # the header says what the tensors are: checked before they are read
            check_layout(_safetensors_header(path), spec, str(path))
        state_dict = _read_safetensors(path)
    else:
        state_dict = _read_torch(path, head)  # memory-mapped: checking it reads no tensor data
        if spec is not None:
            check_layout(state_dict, spec, str(path))
    for key, value in state_dict.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(
                f"checkpoint {path} has NaN/Inf values in {key!r}; the file is damaged, download it again"
            )
    return state_dict


def _is_safetensors(head: bytes) -> bool:
    """safetensors: an 8-byte little-endian header length, then a JSON header."""
    return len(head) > 8 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") < 100_000_000


def _safetensors_header(path: Path) -> StateDict:
    """The file's tensors as meta tensors (names, shapes, float or not) from its header alone."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            slices = {key: f.get_slice(key) for key in f.keys()}
            return {
                key: torch.empty(
                    tensor.get_shape(),
                    dtype=torch.float32 if tensor.get_dtype().lstrip("B").startswith("F") else torch.int64,
                    device="meta",
                )
                for key, tensor in slices.items()
            }
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"checkpoint {path} is not a readable safetensors file ({first_line(e)}); "
            "it may be truncated: download it again"
        ) from None


def _read_safetensors(path: Path) -> StateDict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return dict(load_file(str(path), device="cpu"))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(
            f"checkpoint {path} is not a readable safetensors file ({first_line(e)}); "
            "it may be truncated: download it again"
        ) from None


def _read_torch(path: Path, head: bytes) -> StateDict:
    other = next((what for magic, what in OTHER_FORMATS.items() if head.startswith(magic)), None)
    if other:
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (it is {other}); {FIX}")
    if head[:1] == b"\x80" and not head.startswith(TORCH_LEGACY):
        raise CheckpointError(
            f"{path} is a plain Python pickle, not a PyTorch checkpoint, and samexport does not "
            f"unpickle arbitrary objects; {FIX}"
        )
    if not (head.startswith(TORCH_ZIP) or head.startswith(TORCH_LEGACY)):
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (its contents are neither torch's zip nor "
            f"its legacy format); {FIX}"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=head.startswith(TORCH_ZIP))
    except pickle.UnpicklingError as e:
        code = re.search(r"GLOBAL ([\w.]+)", str(e))
        if code:
            raise CheckpointError(
                f"checkpoint {path} is a pickle that would run code ({code.group(1)}), which "
                "samexport refuses to execute; re-save it as a plain state_dict of tensors "
                "or as .safetensors"
            ) from None
        raise CheckpointError(
            f"checkpoint {path} is truncated or damaged ({_reason(e)}); download it again"
        ) from None
    except Exception as e:  # the unpickler and the zip reader raise anything (EOFError, RuntimeError, ...)
        raise CheckpointError(
            f"checkpoint {path} is truncated or damaged ({_reason(e)}); download it again"
        ) from None
    for wrapper in WRAPPERS:
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"checkpoint {path} is not a state_dict of tensors (nor {{'model': state_dict}} or "
            "{'state_dict': state_dict}); pass the official checkpoint file"
        )
    return {_unwrapped_key(k): v for k, v in obj.items()}


def _unwrapped_key(key: str) -> str:
    """mmengine's loader drops the `module.` a DistributedDataParallel save leaves in front of every key."""
    return key[len("module.") :] if key.startswith("module.") else key


def _reason(error: BaseException) -> str:
    """torch's reason without its advice paragraphs: the line that names the problem."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [
        line
        for line in lines
        if not line.startswith(
            ("Weights only load failed", "(1)", "(2)", "Please file", "Check the documentation")
        )
    ]
    first = (useful or lines or [type(error).__name__])[0]
    return first.split(". ")[0].rstrip(".")[:200]


def guess_model(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """The registry model whose official layout matches the keys and shapes best, or None."""
    keys = {k: tuple(v.shape) for k, v in state_dict.items()}
    best, best_score = None, 0.0
    for name in list_models():
        layout = expected_layout(name)
        same = sum(1 for k, s in keys.items() if layout.get(k) == s)
        score = same / len(set(layout) | set(keys))
        if score > best_score:
            best, best_score = name, score
    return best if best_score > 0.5 else None


def _sample(keys, n: int = 3) -> str:
    keys = sorted(keys)
    more = f", +{len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def check_layout(state_dict: Mapping[str, torch.Tensor], spec: ModelSpec, source: str) -> None:
    """Raise a one-line CheckpointError unless the keys and shapes are exactly the official layout."""
    layout = expected_layout(spec.name)
    missing = set(layout) - set(state_dict)
    unexpected = set(state_dict) - set(layout)
    wrong_shape = {k for k in set(layout) & set(state_dict) if tuple(state_dict[k].shape) != layout[k]}
    if not (missing or unexpected or wrong_shape):
        floating = {k for k, (_, is_float) in _meta_state(spec.name).items() if is_float}
        not_float = sorted(k for k in floating if not state_dict[k].is_floating_point())
        if not_float:
            raise CheckpointError(
                f"{source}: {len(not_float)} weights are not floating point ({not_float[0]} is "
                f"{str(state_dict[not_float[0]].dtype).replace('torch.', '')}); samexport loads the official "
                f"float checkpoint ({spec.checkpoint_file}), not a quantized or converted one"
            )
        return
    guess = guess_model(state_dict)
    if guess and guess != spec.name:
        hint = f"this checkpoint looks like {guess}, not {spec.name} (use --encoder {guess})"
    else:
        hint = f"this checkpoint does not match {spec.name} ({spec.checkpoint_file} expected)"
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing ({_sample(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({_sample(unexpected)})")
    if wrong_shape:
        parts.append(f"{len(wrong_shape)} with other shapes ({_sample(wrong_shape)})")
    raise CheckpointError(f"{source}: {hint}; keys: {'; '.join(parts)}")


def load_checkpoint(model: nn.Module, path: str | Path, spec: ModelSpec) -> None:
    """Strictly load an official checkpoint file into `model`."""
    model.load_state_dict(read_checkpoint(path, spec), strict=True)


# The fill's two rules for SAM 2 models: EdgeTAM's timm RepViT-M1 trunk (no BatchNorm after its token
# mixer's sum) draws running_var from [1.5, 2.5) so its activations stay bounded, and the object-score head's
# last bias is offset by +2 so the objects are present (a logit <= 0 drops them).
RUNNING_VAR_OFFSET_BY_PREFIX = (("image_encoder.trunk.body.", 1.5),)
OFFSET_BY_SUFFIX = (("pred_obj_score_head.layers.2.bias", 2.0), ("pred_obj_score_head.bias", 2.0))


def random_fill(key: str, like: torch.Tensor, salt: str = "") -> torch.Tensor:
    """Deterministic tensor for one key, by the parity fixtures' name-keyed rule.

    Drawn from a generator seeded with crc32(salt + key): BatchNorm running_var uniform
    [1.1, 2.1), running_mean 0.1*N(0,1), 1-D weights 1 + 0.1*N, other 1-D 0.02*N, and
    N(0,1)/sqrt(fan_in) for matrices. This keeps every activation of every family well
    inside float16, so random-weight exports are valid for latency and overflow checks.
    """
    shape = tuple(like.shape)
    if not like.is_floating_point():
        return torch.zeros(shape, dtype=like.dtype)
    g = torch.Generator().manual_seed(zlib.crc32((salt + key).encode("utf-8")))
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "running_var":
        offset = next((o for prefix, o in RUNNING_VAR_OFFSET_BY_PREFIX if key.startswith(prefix)), 1.1)
        t = offset + torch.rand(shape, generator=g)
    elif leaf == "running_mean":
        t = 0.1 * torch.randn(shape, generator=g)
    elif len(shape) < 2:
        t = (
            (1.0 + 0.1 * torch.randn(shape, generator=g))
            if leaf == "weight"
            else 0.02 * torch.randn(shape, generator=g)
        )
    else:
        t = torch.randn(shape, generator=g) * (1.0 / math.sqrt(math.prod(shape[1:])))
    offset = next((o for suffix, o in OFFSET_BY_SUFFIX if key.endswith(suffix)), None)
    if offset is not None:
        t = t + offset
    return t.to(like.dtype)


def random_state_dict(model: nn.Module, salt: str = "") -> StateDict:
    return {k: random_fill(k, v, salt) for k, v in model.state_dict().items()}
