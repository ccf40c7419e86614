"""The one console samexport talks through: progress lines and timed steps on stderr."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Dict, Iterator


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

    @contextmanager
    def bar(self, description: str) -> Iterator[Callable[[int, int], None]]:
        """A progress bar; yields `advance(done, total)`."""
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        start = time.perf_counter()
        with RichProgress(*columns, console=self.console, transient=True) as bar:
            task = bar.add_task(description, total=None)

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            yield advance
        self.say(f"  {description}: {time.perf_counter() - start:.1f} s")
