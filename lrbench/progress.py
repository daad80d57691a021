"""Rich progress bars on stderr, so that ``--json`` output on stdout stays clean."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

stderr_console = Console(stderr=True)


class Steps:
    """Something to call ``advance(n)`` on; silent when progress display is off."""

    def __init__(self, progress: Progress | None = None, task=None):
        self._progress, self._task = progress, task

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)


@contextlib.contextmanager
def progress_bar(description: str, total: int, enabled: bool = True) -> Iterator[Steps]:
    if not enabled:
        yield Steps()
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=stderr_console, transient=True) as progress:
        yield Steps(progress, progress.add_task(description, total=total))


def warn(message: str) -> None:
    """One warning line on stderr (never stdout, which ``--json`` keeps for results)."""
    stderr_console.print(f"[bold yellow]warning:[/] {message}", highlight=False, soft_wrap=True)
