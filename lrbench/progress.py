"""Progress on stderr, so that ``--json`` output on stdout stays clean.

Three modes, decided once per command (:func:`progress_mode`): a rich bar for a person at a terminal, plain
lines at intervals when stderr goes to a log (a batch job must show it is alive and how fast it goes), or
nothing (``--quiet``).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Literal

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text

stderr_console = Console(stderr=True)

ProgressMode = Literal["bar", "lines", "off"]
PROGRESS_MODES: tuple[ProgressMode, ...] = ("bar", "lines", "off")
# Seconds between two plain progress lines of one stage; each stage also ends with one.
LINE_INTERVAL_S = 30.0


def progress_mode(quiet: bool = False) -> ProgressMode:
    """``off`` for ``--quiet``, a bar when stderr is a terminal, plain lines when it is a file or pipe."""
    if quiet:
        return "off"
    return "bar" if sys.stderr.isatty() else "lines"


def progress_line(description: str, done: int, total: int, elapsed: float) -> str:
    """One plain progress line, e.g. ``features DF 8: 3200/7701 images, 41.2 images/s, 1 min 18 s elapsed``."""
    parts = [f"{description}: {done}/{total} images"]
    if elapsed > 0:
        rate = done / elapsed
        parts.append(f"{rate:.1f} images/s")
        if 0 < done < total:
            parts.append(f"about {_duration((total - done) / rate)} left")
    parts.append(f"{_duration(elapsed)} elapsed")
    return ", ".join(parts)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


class Steps:
    """Something to call ``advance(n)`` on; counts the images done and the stage's time in every mode."""

    def __init__(self, progress: Progress | None = None, task=None):
        self._progress, self._task = progress, task
        self.done = 0
        self.started = time.perf_counter()
        self.elapsed = 0.0  # seconds, final once the stage has ended

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def finish(self) -> None:
        self.elapsed = time.perf_counter() - self.started


class _Lines(Steps):
    """Prints a :func:`progress_line` every :data:`LINE_INTERVAL_S` seconds and at the end of the stage."""

    def __init__(self, description: str, total: int):
        super().__init__()
        self.description, self.total = description, total
        self._printed_at, self._printed_done = self.started, -1

    def advance(self, n: int = 1) -> None:
        super().advance(n)
        now = time.perf_counter()
        if now - self._printed_at >= LINE_INTERVAL_S:
            self._print(now)

    def finish(self) -> None:
        super().finish()
        if self._printed_done != self.done:
            self._print(self.started + self.elapsed)

    def _print(self, now: float) -> None:
        self._printed_at, self._printed_done = now, self.done
        line = progress_line(self.description, self.done, self.total, now - self.started)
        stderr_console.print(line, markup=False, highlight=False, soft_wrap=True)


class _RateColumn(ProgressColumn):
    """Images per second, as rich estimates it over the last seconds."""

    def render(self, task) -> Text:
        return Text("" if task.speed is None else f"{task.speed:.1f} images/s")


@contextlib.contextmanager
def progress_bar(description: str, total: int, mode: ProgressMode | bool = "bar") -> Iterator[Steps]:
    """Progress of one stage of ``total`` images in ``mode``; the yielded steps hold its count and time after.

    ``True``/``False`` mean ``bar``/``off``, as the on/off flag this replaced did (trainers still pass it).
    """
    if isinstance(mode, bool):
        mode = "bar" if mode else "off"
    if mode not in PROGRESS_MODES:
        raise ValueError(f"progress mode {mode!r}: choose one of {', '.join(PROGRESS_MODES)}")
    if mode == "bar":
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _RateColumn(),
                   TimeRemainingColumn())
        with Progress(*columns, console=stderr_console, transient=True) as progress:
            steps = Steps(progress, progress.add_task(description, total=total))
            yield steps
            steps.finish()
        return
    steps = _Lines(description, total) if mode == "lines" else Steps()
    yield steps
    steps.finish()


def warn(message: str) -> None:
    """One warning line on stderr (never stdout, which ``--json`` keeps for results)."""
    stderr_console.print(f"[bold yellow]warning:[/] {message}", highlight=False, soft_wrap=True)
