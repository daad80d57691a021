"""Tables on stdout that never cut a number or a name, at any terminal width."""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

# Width for stdout that is neither a terminal nor sized by COLUMNS (a pipe, a file): nothing there wraps.
PIPED_WIDTH = 200


def stdout_console() -> Console:
    """The terminal's width; ``COLUMNS`` when set (also piped: the user asked for it); else wide."""
    if sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit():
        return Console()
    return Console(width=PIPED_WIDTH)


def unclipped_table(columns: list[str], rows: list[list[str]], whole: tuple[str, ...] = (), **options) -> Table:
    """A rich table whose cells fold onto more lines when narrow rather than end in '…'; the ``whole``
    columns (names, numbers) are kept on one line at their widest cell's width."""
    table = Table(**options)
    for index, column in enumerate(columns):
        if column in whole:
            widest = max((len(row[index]) for row in rows), default=0)
            table.add_column(column, no_wrap=True, min_width=max(widest, len(column)))
        else:
            table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def print_entries(console: Console, title: str, entries: dict[str, dict[str, str]]) -> None:
    """Entries as one table with a row each when it fits the console, else one field/value block each,
    so a narrow terminal still shows every name and value whole."""
    columns = ["name", *next(iter(entries.values()), {}).keys()]
    cells = [[name, *(info[c] for c in columns[1:])] for name, info in entries.items()]
    table = unclipped_table(columns, cells, whole=("name", "plugin"), title=title, title_justify="left")
    natural = Measurement.get(console, console.options.update_width(10_000), table).maximum
    if natural <= console.width:
        console.print(table)
        return
    console.print(title)
    for row in cells:
        block = Table(show_header=False, title_justify="left")
        block.add_column(no_wrap=True)
        block.add_column(overflow="fold")
        for column, value in zip(columns, row):
            block.add_row(column, value)
        console.print(block)
