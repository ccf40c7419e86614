"""Prompts that name objects to track through a clip: `--point`/`--box` on frame 0 or a `--prompts` JSON
file of per-frame, per-object clicks and boxes, checked in one line each before any work."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from .errors import InputError, UsageError


@dataclass(frozen=True)
class ObjectPrompt:
    """One object's prompt on one frame: clicks (x, y, label 1 or 0) and/or a box, in video pixels."""

    frame: int
    object: int
    points: Tuple[Tuple[float, float, int], ...] = ()
    box: Optional[Tuple[float, float, float, float]] = None

    def describe(self) -> str:
        return f"object {self.object} on frame {self.frame}"


def prompts_from_flags(
    points: List[Tuple[float, float, int]], boxes: List[Tuple[float, float, float, float]]
) -> List[ObjectPrompt]:
    """--point/--box on frame 0, the image rule: every click and the first box are object 1, each further
    box one more object."""
    if not points and not boxes:
        return []
    first = ObjectPrompt(0, 1, tuple(points), boxes[0] if boxes else None)
    return [first] + [ObjectPrompt(0, i + 2, (), box) for i, box in enumerate(boxes[1:])]


def read_prompts_file(path: Path) -> List[ObjectPrompt]:
    """`--prompts FILE.json`: a list of {"frame": F, "object": ID, "points": [[x, y, label], ...], "box":
    [x0, y0, x1, y1]} (points, box or both); an object may be prompted on several frames, once per frame."""
    try:
        entries = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"--prompts file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"--prompts {path} is not a JSON file ({error})") from None
    if not isinstance(entries, list) or not entries:
        raise InputError(
            f'--prompts {path} must hold a non-empty list like [{{"frame": 0, "object": 1, "points": '
            "[[x, y, 1]]}]"
        )
    prompts, seen = [], {}
    for index, entry in enumerate(entries):
        where = f"--prompts {path} entry {index}"
        if not isinstance(entry, dict) or set(entry) - {"frame", "object", "points", "box"}:
            raise InputError(f'{where} must be an object with "frame", "object" and "points" and/or "box"')
        frame, obj = entry.get("frame"), entry.get("object")
        if not _is_int(frame) or frame < 0:
            raise InputError(f'{where}: "frame" must be a frame index (0, 1, ...), got {frame!r}')
        if not _is_int(obj) or obj < 1:
            raise InputError(f'{where}: "object" must be an object id (1, 2, ...), got {obj!r}')
        points = entry.get("points") or []
        if not isinstance(points, list) or not all(
            isinstance(p, list) and len(p) == 3 and all(_is_number(v) for v in p) and p[2] in (0, 1)
            for p in points
        ):
            raise InputError(f'{where}: "points" must be [[x, y, label], ...] with label 1 or 0')
        box = entry.get("box")
        if box is not None and not (
            isinstance(box, list)
            and len(box) == 4
            and all(_is_number(v) for v in box)
            and box[0] < box[2]
            and box[1] < box[3]
        ):
            raise InputError(f'{where}: "box" must be [x0, y0, x1, y1] with x0 < x1 and y0 < y1')
        prompt = ObjectPrompt(
            frame, obj, tuple((float(x), float(y), int(label)) for x, y, label in points), box and tuple(box)
        )
        if not prompt.points and prompt.box is None:
            raise InputError(f"{where} ({prompt.describe()}) is empty; give it points, a box or both")
        if (frame, obj) in seen:
            raise InputError(
                f"{where} prompts {prompt.describe()} again (entry {seen[frame, obj]} did); "
                "put all of one object's clicks on one frame in one entry"
            )
        seen[frame, obj] = index
        prompts.append(prompt)
    return prompts


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_prompts_in_clip(prompts: List[ObjectPrompt], count: int, hw: Tuple[int, int], name: str) -> None:
    """Every prompt on a frame the clip has, inside its frames."""
    h, w = hw
    for prompt in prompts:
        if prompt.frame >= count:
            raise InputError(
                f"the prompt for {prompt.describe()} is past the clip's end: {name} has frames 0..{count - 1}"
            )
        for x, y, _ in prompt.points:
            if not (0 <= x <= w and 0 <= y <= h):
                raise InputError(f"{prompt.describe()}: point {x:g},{y:g} lies outside the {w}x{h} frames")
        if prompt.box is not None:
            x0, y0, x1, y1 = prompt.box
            if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
                raise InputError(
                    f"{prompt.describe()}: box {x0:g},{y0:g},{x1:g},{y1:g} reaches outside the {w}x{h} frames"
                )
