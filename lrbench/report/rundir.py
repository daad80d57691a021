"""The run directory, one model for both protocol kinds: what each kind's directory holds, how it is claimed,
written, repaired after a kill, replaced, read back with its damage checks, and named portably.

A run of either kind is an object with ``manifest``, ``path``, ``layout`` (its ``RunLayout``) and ``tables()``
(file name → table). ``report.results`` (verification) and ``report.identification`` add each kind's checks of
what its tables must say of each other, its figures and its report; ``report.runs`` dispatches on the kind.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shlex
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from ..errors import DataError, UsageError, brief_list
from ..fileio import OutputLock, built_in_place, check_writable, dead_siblings, is_debris, write_atomic
from ..progress import warn
from .formats import FIGURE_FORMATS

MANIFEST = "manifest.json"
REPORT_HTML = "report.html"
OVERLAY_CSV = "overlay.csv"  # an overlay's results of every run, side by side (report --out only)


@dataclass(frozen=True, kw_only=True)
class RunLayout:
    """What a run directory of one kind holds: its tables (each with the columns readers rely on, their types,
    the columns older runs may lack, the columns whose rows must be unique) and the files its report adds."""

    kind: str
    columns: dict[str, dict[str, type]]  # table → required columns and their types
    optional_columns: dict[str, dict[str, type]] = field(default_factory=dict)  # absent in older runs; "" = none
    may_be_empty: frozenset[str] = frozenset()  # required columns whose cell may be empty (no value)
    keys: dict[str, tuple[str, ...]] = field(default_factory=dict)  # a second row with the same values is damage
    report_files: tuple[str, ...] = ()  # what the report of one run adds
    overlay_files: tuple[str, ...] = ()  # what an overlay's report writes
    float_formats: dict[str, str] = field(default_factory=dict)  # table → pandas float_format when written

    @property
    def run_files(self) -> tuple[str, ...]:
        return (MANIFEST, *self.columns, *self.report_files)


def _with_formats(*pngs: str, formats: tuple[str, ...] = ()) -> tuple[str, ...]:
    return tuple(png.replace(".png", f".{suffix}") for png in pngs for suffix in ("png", *formats))


# -- the two kinds --------------------------------------------------------------------------------------------------
RESULTS, FOLDS, ROC, SCORES = "results.csv", "folds.csv", "roc.csv", "scores.csv"
ROC_PNG, ACCURACY_PNG = "roc.png", "accuracy_vs_resolution.png"
_VERIFICATION_REPORT = (*_with_formats(ROC_PNG, ACCURACY_PNG, formats=FIGURE_FORMATS), REPORT_HTML)
VERIFICATION = RunLayout(
    kind="verification",
    columns={
        RESULTS: {"df": int, "probe_px": str, "interocular_px": float, "accuracy_mean": float, "accuracy_std": float,
                  "accuracy_sem": float, "auc": float, "eer": float, "tar_at_far_0.001": float,
                  "tar_at_far_0.01": float},
        FOLDS: {"df": int, "fold": int, "accuracy": float, "threshold": float},
        ROC: {"df": int, "fpr": float, "tpr": float},
        SCORES: {"pair": int, "fold": int, "same": int, "image_a": str, "image_b": str, "df": int, "score": float},
    },
    optional_columns={
        RESULTS: {f"{metric}_ci_{end}": float for metric in ("accuracy", "auc", "tar_at_far_0.001", "tar_at_far_0.01")
                  for end in ("low", "high")},
        SCORES: {"person_a": str, "person_b": str},  # empty: the protocol names nobody (a .bin)
    },
    # a TAR at a FAR below one impostor pair is not measured (NaN)
    may_be_empty=frozenset({"tar_at_far_0.001", "tar_at_far_0.01"}),
    keys={RESULTS: ("df",), FOLDS: ("df", "fold"), SCORES: ("df", "pair")},
    report_files=_VERIFICATION_REPORT,
    overlay_files=(*_VERIFICATION_REPORT, OVERLAY_CSV),
    float_formats={SCORES: "%.8g"},
)

RANKS_CSV, CMC_CSV = "ranks.csv", "cmc.csv"
CMC_PNG, RANK1_PNG = "cmc.png", "rank1_vs_resolution.png"
IDENTIFICATION = RunLayout(
    kind="identification",
    columns={
        RESULTS: {"df": int, "probe_px": str, "interocular_px": float, "group": str, "rank1": float,
                  "probes": int},
        RANKS_CSV: {"df": int, "probe": str, "true_id": str, "rank": int},
        CMC_CSV: {"df": int, "k": int, "accuracy": float},
    },
    optional_columns={RANKS_CSV: {"group": str}},
    # a probe whose identity is not in the gallery has no rank; TPIR without non-mated probes, CMC without mated
    may_be_empty=frozenset({"rank", "accuracy"}),
    keys={RESULTS: ("df", "group"), CMC_CSV: ("df", "k")},
    report_files=(CMC_PNG, RANK1_PNG, REPORT_HTML),
    overlay_files=(RANK1_PNG, REPORT_HTML, OVERLAY_CSV),
    float_formats={RANKS_CSV: "%.8g", CMC_CSV: "%.8g"},
)
LAYOUTS = {layout.kind: layout for layout in (VERIFICATION, IDENTIFICATION)}


def kind_of(manifest: dict) -> str:
    """A manifest's kind: "identification" when it says so, else "verification" (runs before the key had none)."""
    return "identification" if manifest.get("kind") == "identification" else "verification"


# -- the manifest ---------------------------------------------------------------------------------------------------
# What readers of a run (the console table, the report) take from its manifest: required keys and their
# types, nested, and optional keys ("?") that must have their type when present.
_MANIFEST_SHAPE = {
    "backbone": str,
    "protocol": str,
    "degradation": {"name": str, "mode": str, "description": str},
    "label?": str,
    "settings?": dict,
    "data?": dict,
    "definitions?": dict,
}
_TYPE_NAMES = {str: "text", dict: "an object"}


def read_manifest(run_dir: Path) -> dict:
    """A run directory's manifest, checked for what readers of a run rely on."""
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise DataError(f"{path}: missing; {run_dir} is not an lrbench run directory")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    problems = _shape_problems(manifest, _MANIFEST_SHAPE)
    if problems:
        raise DataError(f"{path}: not an lrbench run manifest ({'; '.join(problems)})")
    return manifest


def _shape_problems(value, shape: dict, prefix: str = "") -> list[str]:
    """What in ``value`` (parsed JSON) does not match ``shape``, in words: "'protocol' is missing", ..."""
    if not isinstance(value, dict):
        return [f"{prefix.rstrip('.')!r} is not an object" if prefix else "not a JSON object"]
    problems = []
    for key, kind in shape.items():
        name = key.rstrip("?")
        if name not in value:
            problems += [] if key.endswith("?") else [f"{prefix + name!r} is missing"]
        elif isinstance(kind, dict):
            problems += _shape_problems(value[name], kind, f"{prefix}{name}.")
        elif not isinstance(value[name], kind):
            problems.append(f"{prefix + name!r} is not {_TYPE_NAMES[kind]}")
    return problems


def portable_path(path: str, root: Path | None) -> str:
    """A path as a shared run directory names it: relative to the data root when under it ("." for the root),
    else the file's name alone; never the machine's home or build folders."""
    pure = Path(path)
    if root is not None:
        with contextlib.suppress(ValueError):
            return PurePosixPath(*pure.relative_to(root).parts).as_posix() or "."
    return pure.name


def portable_manifest(manifest: dict) -> dict:
    """The manifest with every absolute path (settings, data, weights, caches, command lines) made portable
    (``portable_path``, against ``settings.data``); the hashes that identify the data stay, and ``data.root``
    names the data root's folder. A manifest without absolute paths is returned as it is."""
    data = manifest.get("settings", {}).get("data")
    root = Path(data) if isinstance(data, str) and os.path.isabs(data) else None

    def portable(value):
        if isinstance(value, dict):  # a recorded command line (the run's, a fold's, its training's) word by word
            return {key: _portable_command(item, root) if key == "command" and isinstance(item, str) else portable(item)
                    for key, item in value.items()}
        if isinstance(value, list):
            return [portable(item) for item in value]
        if isinstance(value, str) and os.path.isabs(value):
            return portable_path(value, root)
        return value

    result = portable(manifest)
    if root is not None and isinstance(result.get("data"), dict):
        result["data"] = {"root": root.name, **result["data"]}
    return result


def _portable_command(command: str, root: Path | None) -> str:
    """A recorded command line with each absolute path argument (alone or after ``--option=``) made portable."""
    try:
        words = shlex.split(command)
    except ValueError:
        return command

    def portable(word: str) -> str:
        option, equals, value = word.partition("=")
        if equals and option.startswith("-") and os.path.isabs(value):
            return f"{option}={portable_path(value, root)}"
        return portable_path(word, root) if os.path.isabs(word) else word

    return shlex.join(portable(word) for word in words)


def json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


# -- claiming, writing, repairing, replacing ------------------------------------------------------------------------


def write_run(run, out: Path, overwrite: bool = False, render: Callable | None = None) -> Path:
    """Write a run directory of either kind into a temporary sibling, then swap it into place.

    ``render(run, folder)`` adds figures and the report before the swap, so a reader never sees a
    half-written run. The caller holds the output's lock (``claim_run_dir``), so nobody else touches ``out``
    meanwhile. The swap, and why it leaves nothing behind:

    1. the new run is complete in ``.NAME.tmp-PID-…``;
    2. an existing run is renamed to ``.NAME.old-PID``;
    3. the temporary folder is renamed to ``NAME``;
    4. the old run is removed.

    A process killed in (1) or (4) leaves debris beside a valid ``NAME``; one killed between (2) and (3)
    leaves no ``NAME`` but the previous run, whole, in ``.NAME.old-PID``. The next ``write_run`` or
    ``claim_run_dir`` for ``NAME`` first repairs both (``recover_run_dir``): the previous run is put back,
    as the swap never finished, and the debris of dead processes is removed.

    The manifest is written portable (``portable_manifest``): a shared run names no path of this machine.
    """
    out = Path(out)
    recover_run_dir(out)
    check_run_target(out, overwrite)
    run.manifest = portable_manifest(run.manifest)
    run.manifest.setdefault("created", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"))
    layout = run.layout
    with built_in_place(out) as tmp:
        write_atomic(tmp / MANIFEST, json.dumps(run.manifest, indent=2, default=json_default) + "\n")
        for name, table in run.tables().items():
            write_atomic(tmp / name, table.to_csv(index=False, float_format=layout.float_formats.get(name)))
        run.path = out
        if render is not None:
            render(run, tmp)
    return out


@contextlib.contextmanager
def claim_run_dir(out: Path, overwrite: bool = False, command: str = "") -> Iterator[None]:
    """Everything that can refuse ``--out``, checked before the evaluation starts; the output's lock is held
    (a second process writing the same run directory is refused) until the run is in place."""
    out = Path(out)
    check_writable(out, "--out")
    with OutputLock(out, "--out", command=command):
        recover_run_dir(out)
        check_run_target(out, overwrite)
        yield


def recover_run_dir(out: Path) -> None:
    """Repair what a killed ``write_run`` left beside ``out`` (see there): put the previous run back if the
    swap stopped half-way, and remove temporary folders and replaced runs of processes that are gone."""
    out = Path(out)
    old_runs = dead_siblings(out, "old")
    if not out.exists():
        complete = [old for old in old_runs if run_dir_problem(old) is None]
        complete.sort(key=lambda old: old.stat().st_mtime, reverse=True)
        if complete:
            os.replace(complete[0], out)
            old_runs.remove(complete[0])
            warn(f"{out}: restored the previous run from {complete[0].name}, left by a replacement that was killed")
    for entry in dead_siblings(out, "tmp") + old_runs:
        _remove(entry)


def _remove(folder: Path) -> None:
    """Remove a replaced run; one that cannot be removed is named, never silently left behind."""
    if not folder.exists():
        return
    try:
        shutil.rmtree(folder)
    except OSError as exc:
        warn(f"{folder}: cannot remove this replaced lrbench run ({exc.strerror}); delete it by hand")


def check_run_target(out: Path, overwrite: bool) -> None:
    """Refuse an ``--out`` that is not new, not empty and not (with ``--overwrite``) an lrbench run directory.

    ``--overwrite`` deletes the folder it replaces, so it only replaces what lrbench wrote: a folder whose
    manifest.json is an lrbench run manifest and which holds nothing but the files of a run directory of its kind.
    """
    out = Path(out)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UsageError(
            f"--out {out}: is {'a link' if out.is_symlink() else 'a file'}, not a run directory; choose another folder"
        )
    if not out.exists() or not any(out.iterdir()):
        return
    problem = run_dir_problem(out)
    if problem is not None:
        raise UsageError(
            f"--out {out}: already exists and is not an lrbench run directory ({problem}), so lrbench will not "
            "replace it; choose another folder"
        )
    if not overwrite:
        raise UsageError(f"--out {out}: already exists; choose another folder or pass --overwrite")


def run_dir_problem(path: Path) -> str | None:
    """Why ``path`` is not a complete run directory (of either kind) that lrbench may replace, or None."""
    if not (path / MANIFEST).is_file():
        return f"no {MANIFEST}; it holds {_some(sorted(path.iterdir()))}"
    try:
        layout = LAYOUTS[kind_of(read_manifest(path))]
    except DataError:
        return f"its {MANIFEST} is not an lrbench run manifest"
    missing = [name for name in layout.columns if not (path / name).is_file()]
    if missing:
        return f"no {', '.join(missing)}"
    foreign = [entry for entry in sorted(path.iterdir()) if not is_own_file(entry, layout.run_files)]
    if foreign:
        return f"it holds {_some(foreign)}, which lrbench did not write"
    return None


def check_report_folder(target: Path) -> None:
    """Refuse an overlay's ``--out`` that would overwrite a run's own report or mix into someone's folder.

    Accepted: a new or empty folder, or one holding only report files (of either kind's overlay) and run
    directories (an earlier overlay, or a demo's folder with its runs).
    """
    target = Path(target)
    if not target.is_dir():
        return
    if (target / MANIFEST).exists():
        raise UsageError(
            f"--out {target}: is a run directory, and its {REPORT_HTML} is that run's own report; "
            f"choose another folder (`lrbench report {target}` alone re-renders it)"
        )
    overlay_files = tuple(dict.fromkeys(name for layout in LAYOUTS.values() for name in layout.overlay_files))
    foreign = [
        entry
        for entry in sorted(target.iterdir())
        if not is_own_file(entry, overlay_files) and not (entry.is_dir() and run_dir_problem(entry) is None)
    ]
    if foreign:
        raise UsageError(
            f"--out {target}: holds {_some(foreign)}, which lrbench did not write; "
            "choose a new or empty folder for the report"
        )


def is_own_file(entry: Path, names: tuple[str, ...]) -> bool:
    """A plain file named in ``names``, or a leftover of lrbench's own writers: what an output may replace."""
    return (entry.name in names and entry.is_file() and not entry.is_symlink()) or is_debris(entry)


def _some(entries: list[Path]) -> str:
    return brief_list([entry.name + ("/" if entry.is_dir() else "") for entry in entries])


# -- reading back ---------------------------------------------------------------------------------------------------


def read_run_files(path: Path, kind: str) -> tuple[dict, dict[str, pd.DataFrame]]:
    """A run directory's manifest and typed tables, checked: any damage is one DataError naming the file (and
    line); a run of the other kind is a UsageError saying so."""
    path = Path(path)
    if not path.is_dir():
        raise UsageError(f"{path}: not a run directory")
    manifest = read_manifest(path)
    found = kind_of(manifest)
    if found != kind:
        raise UsageError(f"{path}: an identification run, not a verification run (its pairs, folds and scores are "
                         "not there)" if found == "identification" else
                         f"{path}: a verification run, not an identification run (its ranks are not there)")
    layout = LAYOUTS[kind]
    return manifest, {name: read_table(path / name, layout) for name in layout.columns}


def read_table(path: Path, layout: RunLayout = VERIFICATION) -> pd.DataFrame:
    """One CSV table of a run directory, with the columns ``layout`` requires for it, typed and checked."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            rows = [(reader.line_num, row) for row in reader if row]  # blank lines skipped, as pandas does
    except FileNotFoundError:
        raise DataError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    if not rows:
        raise DataError(f"{path}: empty file")
    header, body = rows[0][1], rows[1:]
    required = layout.columns[path.name]
    missing = [column for column in required if column not in header]
    if missing:
        raise DataError(f"{path}: no column {', '.join(map(repr, missing))} (its header: {','.join(header)})")
    twice = sorted({column for column in header if header.count(column) > 1})
    if twice:
        raise DataError(f"{path}: column {', '.join(map(repr, twice))} more than once in the header")
    if not body:
        raise DataError(f"{path}: no rows below the header")
    for number, row in body:
        if len(row) != len(header):
            raise DataError(f"{path}:{number}: {len(row)} fields, but the header has {len(header)}")
    table = pd.DataFrame([row for _, row in body], columns=header)
    lines = [number for number, _ in body]
    optional = layout.optional_columns.get(path.name, {})
    for column in header:
        kind = required.get(column) or optional.get(column)
        empty_allowed = column in optional or column in layout.may_be_empty
        table[column] = (_typed(path, lines, table[column], kind, empty_allowed) if kind
                         else _numeric_if_possible(table[column]))
    key = list(layout.keys.get(path.name, ()))
    repeated = np.flatnonzero(table.duplicated(key).to_numpy()) if key else []
    if len(repeated):
        which = ", ".join(f"{column} {table[column].iloc[repeated[0]]}" for column in key)
        raise DataError(f"{path}:{lines[repeated[0]]}: a second row for {which}")
    return table


def _typed(path: Path, lines: list[int], values: pd.Series, kind: type, may_be_empty: bool = False) -> pd.Series:
    """A known column converted to ``kind``; the first bad value is an error with its file and line. An empty
    cell of an integer column that may be empty reads as a missing integer (pandas' Int64)."""
    if kind is str:
        converted, bad = values, (values == "").to_numpy()
    else:
        converted = pd.to_numeric(values, errors="coerce")
        numbers = converted.to_numpy(dtype=float)
        bad = np.isnan(numbers) | ((~np.isfinite(numbers) | (numbers != np.round(numbers))) if kind is int else False)
        if may_be_empty:
            bad &= (values != "").to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        value = values.iloc[row]
        what = "is empty" if value == "" else f"is not {'an integer' if kind is int else 'a number'}: {value!r}"
        raise DataError(f"{path}:{lines[row]}: column {values.name!r} {what}")
    if kind is int:
        return converted.astype("Int64" if converted.isna().any() else "int64")
    return converted


def _numeric_if_possible(values: pd.Series) -> pd.Series:
    try:
        return pd.to_numeric(values)
    except ValueError:
        return values
