"""The one console samexport talks through: progress lines and timed steps on stderr."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, NamedTuple


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
    def bar(self, description: str, unit: str = "batches") -> Iterator[Callable[[int, int], None]]:
        """A progress bar with rate and time left; yields `advance(done, total)`. Where stderr is not a
        terminal (a log, CI) the bar cannot redraw, so a plain line with the same figures is printed at
        most every LOG_EVERY_S seconds instead."""
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
        )
        start = time.perf_counter()
        logged = [start]
        with RichProgress(*columns, console=self.console, transient=True) as bar:
            task = bar.add_task(description, total=None, rate="")

            def advance(done: int, total: int) -> None:
                now = time.perf_counter()
                line = progress_line(description, done, total, now - start, unit)
                bar.update(task, completed=done, total=total, rate=line.rate)
                if not self.console.is_terminal and (now - logged[0] >= LOG_EVERY_S or done == total):
                    logged[0] = now
                    self.say(line.text)

            yield advance
        self.say(f"  {description}: {time.perf_counter() - start:.1f} s")


LOG_EVERY_S = 15.0


class ProgressLine(NamedTuple):
    rate: str  # for the bar's column
    text: str  # a whole line, where no bar can be drawn


def progress_line(description: str, done: int, total: int, elapsed: float, unit: str) -> ProgressLine:
    """'12.5 batches/s' and '  everything mode: 40/1024 batches, 12.5/s, about 79 s left'."""
    per_second = done / elapsed if elapsed > 0 and done else 0.0
    rate = f"{per_second:.1f} {unit}/s" if per_second else ""
    left = f", about {(total - done) / per_second:.0f} s left" if per_second and total > done else ""
    return ProgressLine(
        rate,
        f"  {description}: {done}/{total} {unit}" + (f", {per_second:.1f}/s" if per_second else "") + left,
    )


@contextmanager
def loggers_quiet(*names: str) -> Iterator[None]:
    """The named loggers ("" is the root logger) show only errors within the block, then what they showed
    before: third-party libraries that log advice or import trouble unrelated to samexport's work."""
    import logging

    loggers = [logging.getLogger(name or None) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@contextmanager
def converter_output_held() -> Iterator[None]:
    """What a converter's native code and its libraries print on stdout and stderr (log lines of Google's
    and Apple's converters, progress lines) held back: shown only when the block fails, as its last
    lines, so that a run's output stays samexport's own."""
    import os
    import sys
    import tempfile

    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile() as held:
        try:
            for fd in saved:
                os.dup2(held.fileno(), fd)
            yield
        except BaseException:
            _restore(saved)
            held.seek(0)
            tail = held.read().decode(errors="replace").strip().splitlines()[-20:]
            if tail:
                sys.stderr.write("\n".join(["converter output (last lines):", *tail]) + "\n")
            raise
        finally:
            _restore(saved)


def _restore(saved: Dict[int, int]) -> None:
    import os
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    for fd, copy in list(saved.items()):
        os.dup2(copy, fd)
        os.close(copy)
        del saved[fd]
