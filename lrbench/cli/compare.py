"""``lrbench compare``: runs on the same pairs, each against the first (McNemar, paired bootstrap intervals)."""

import json
import sys
from pathlib import Path

import click
from rich.console import Console

from ..fileio import OutputLock
from ..report.compare import (
    COMPARE_HTML,
    COMPARE_JSON,
    DELTA_FIGURE,
    RESAMPLES,
    SEED,
    check_compare_out,
    compare_runs,
    console_table,
    write_outputs,
)
from .common import command_line


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--resamples", type=click.IntRange(min=1), default=RESAMPLES, show_default=True,
              help="Identity-bootstrap resamples for the intervals.")
@click.option("--seed", type=int, default=SEED, show_default=True, help="Seed of the bootstrap's resampling.")
@click.option("--out", "-o", type=click.Path(path_type=Path),
              help="Folder for compare.json, delta_accuracy.png/.pdf/.svg and compare.html; without it nothing "
              "is written.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON on stdout.")
def compare(runs, resamples, seed, out, as_json):
    """Compare runs on the same pairs, each against the first: McNemar tests and paired bootstrap intervals.

    RUNS are run directories of one protocol (same pairs file and landmarks); DFs they all report are
    compared. Intervals resample people, not pairs, because pairs share people.
    """
    from ..report.results import load_run  # pandas and sklearn: loaded when a comparison runs, not for --help

    loaded = [load_run(path) for path in runs]  # every run checked before any work
    if out is not None:
        check_compare_out(out)
    payload = compare_runs(loaded, resamples, seed)
    if out is not None:
        with OutputLock(out, "--out", command=command_line()):
            check_compare_out(out)
            write_outputs(payload, out)
    if as_json:
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    console = Console() if sys.stdout.isatty() else Console(width=160)
    console.print(console_table(payload))
    if out is not None:
        console.print(f"written: {out / COMPARE_JSON}, {out / DELTA_FIGURE} (+ .pdf, .svg), {out / COMPARE_HTML}")
