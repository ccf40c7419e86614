"""The one console samexport talks through: progress lines and timed steps on stderr."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Dict


class Progress:
    """Timed steps with a live spinner on stderr; `timings` keeps each step's seconds."""

    def __init__(self, quiet: bool = False) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, quiet=quiet, soft_wrap=True)
        self.timings: Dict[str, float] = {}

    def say(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def status(self, text: str):
        return self.console.status(text)

    @contextmanager
    def step(self, name: str):
        start = time.perf_counter()
        with self.console.status(f"{name} ..."):
            yield
        seconds = time.perf_counter() - start
        self.timings[name] = round(seconds, 2)
        self.say(f"  {name}: {seconds:.1f} s")
