"""Runs of either kind through one pipeline: read (checked), render (figures and report, kept whole on failure),
show (console table, JSON). What differs between verification and identification is looked up here, once."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from . import identification, render, results, rundir
from .rundir import LAYOUTS, kind_of, read_manifest


@dataclass(frozen=True, kw_only=True)
class KindPipeline:
    """A kind's reader, renderer, console table and ``--json`` entry."""

    load: Callable
    write: Callable  # (run, out, overwrite, render)
    render: Callable  # (runs, folder, different)
    console_table: Callable
    json_entry: Callable


PIPELINES = {
    "verification": KindPipeline(load=results.load_run, write=results.write_run, render=render.render,
                                 console_table=render.console_table, json_entry=render.results_entry),
    "identification": KindPipeline(load=identification.load_identification_run, write=rundir.write_run,
                                   render=identification.render, console_table=identification.console_table,
                                   json_entry=identification.results_entry),
}


def kind(run) -> str:
    return run.layout.kind


def load(path: Path):
    """A run directory of either kind, read back with its kind's damage checks."""
    path = Path(path)
    if not path.is_dir():
        raise UsageError(f"{path}: not a run directory")
    return PIPELINES[kind_of(read_manifest(path))].load(path)


def load_all(paths: list[Path]) -> list:
    """Runs to show or overlay: every one read and checked before anything is written, all of one kind."""
    runs = [load(path) for path in paths]
    kinds = [kind(run) for run in runs]
    if "identification" in kinds and "verification" in kinds:
        mixed = runs[kinds.index("verification")].path
        raise UsageError(f"{mixed}: a verification run cannot be overlaid with identification runs")
    return runs


def write(run, out: Path, overwrite: bool = False) -> Path:
    """Write a run directory of either kind, its figures and report included (``rundir.write_run``)."""
    return PIPELINES[kind(run)].write(run, out, overwrite, render_run)


def render_run(run, folder: Path) -> None:
    """One run's figures and report into ``folder`` (``rundir.write_run``'s ``render``)."""
    PIPELINES[kind(run)].render([run], folder)


def render_into(runs: list, folder: Path, different: list[str] = ()) -> None:
    """The runs' figures and report (an overlay for several) into ``folder``, replacing earlier ones whole."""
    layout = LAYOUTS[kind(runs[0])]
    files = tuple(dict.fromkeys((*layout.report_files, *layout.overlay_files)))
    render.render_into(runs, folder, different, render=PIPELINES[layout.kind].render, files=files)


def console_table(run):
    return PIPELINES[kind(run)].console_table(run)


def results_json(runs: list) -> str:
    """Each run's results with its label and definitions; one run as an object, several as a list."""
    payload = [PIPELINES[kind(run)].json_entry(run) for run in runs]
    return json.dumps(payload if len(payload) > 1 else payload[0], indent=2, ensure_ascii=False, default=str)
