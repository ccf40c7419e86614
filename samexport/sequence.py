"""Parts run step by step (frame by frame) over a session, the state between steps fed as the interfaces
declare it: an input is the caller's (the step's own feeds), another part's output at this step
(`Interface.upstream`), or a part's output at earlier steps (`Interface.carried`: slots newest first, empty
slots zeros). The same loop runs PyTorch's modules and every export (`runtime.Session`), which is what
`export.check.check_sequence` compares frame by frame."""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from .errors import UsageError


def step_order(interfaces: Mapping, parts: Sequence[str]) -> List[str]:
    """`parts` ordered so that a part comes after those whose outputs it takes at the same step."""
    order: List[str] = []
    pending = list(parts)
    while pending:
        ready = [
            p for p in pending if all(u in order or u not in pending for u in interfaces[p].upstream.values())
        ]
        if not ready:
            raise UsageError(
                f"the parts {', '.join(pending)} feed each other at one step; nothing can run first"
            )
        order += ready
        pending = [p for p in pending if p not in ready]
    return order


class SequencePipeline:
    """A session's parts (every part its interfaces describe, by default), run once per step;
    `history[part]` holds every step's outputs and `fed[part]` every step's feeds (what a teacher-forced
    check hands the other backend)."""

    def __init__(self, session, parts: Optional[Sequence[str]] = None) -> None:
        self.session = session
        self.parts = step_order(session.interfaces, parts or list(session.interfaces))
        session.require(*self.parts)
        self.reset()

    def reset(self) -> None:
        self.history: Dict[str, List[Dict[str, np.ndarray]]] = {p: [] for p in self.parts}
        self.fed: Dict[str, List[Dict[str, np.ndarray]]] = {p: [] for p in self.parts}

    def carried(self, input_name: str, interface) -> np.ndarray:
        """The stacked earlier outputs an input is fed, newest first, zeros where there is no such step."""
        carried = interface.carried[input_name]
        tensor = next(t for t in interface.inputs if t.name == input_name)
        slot_shape = (1, *tensor.shape[1:])
        if not all(isinstance(d, int) for d in slot_shape):
            raise UsageError(f"carried input {input_name} needs a fixed shape after its slot axis")
        earlier = self.history[carried.part][::-1][: carried.slots]
        slots = [np.asarray(o[carried.output], np.float32).reshape(slot_shape) for o in earlier]
        slots += [np.zeros(slot_shape, np.float32)] * (carried.slots - len(slots))
        return np.concatenate(slots)

    def step(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, Dict[str, np.ndarray]]:
        """One step: the caller's feeds -> every part's outputs at this step."""
        outputs: Dict[str, Dict[str, np.ndarray]] = {}
        for part in self.parts:
            interface = self.session.interfaces[part]
            part_feeds = {}
            for tensor in interface.inputs:
                name = tensor.name
                if name in interface.carried:
                    part_feeds[name] = self.carried(name, interface)
                elif name in interface.upstream and interface.upstream[name] in outputs:
                    source = outputs[interface.upstream[name]]
                    part_feeds[name] = source.get(name, next(iter(source.values())))
                elif name in feeds:
                    part_feeds[name] = np.asarray(feeds[name], np.float32)
                else:
                    raise UsageError(f"step feeds lack {part}'s input {name}")
            outputs[part] = self.session.run(part, part_feeds)
            self.fed[part].append(part_feeds)
        for part, values in outputs.items():
            self.history[part].append(values)
        return outputs

    def run(self, steps: Sequence[Mapping[str, np.ndarray]]) -> List[Dict[str, Dict[str, np.ndarray]]]:
        """Every step of a clip from the start."""
        self.reset()
        return [self.step(feeds) for feeds in steps]
