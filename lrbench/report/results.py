"""A run's results in memory and on disk: the run directory, written atomically, and read back."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import auc as curve_area

from ..errors import DataError, UsageError, brief_list
from ..fileio import OutputLock, built_in_place, check_writable, dead_siblings, is_debris, write_atomic
from ..progress import warn
from ..ranges import parse_ranges
from .metrics import VerificationResult, evaluate_verification
from .stats import describe as describe_intervals
from .stats import fold_decisions, identity_of

# What a run directory holds: the data files, then the files ``report.render`` adds.
MANIFEST = "manifest.json"
RESULTS = "results.csv"
FOLDS = "folds.csv"
ROC = "roc.csv"
SCORES = "scores.csv"
ROC_PNG = "roc.png"
ACCURACY_PNG = "accuracy_vs_resolution.png"
REPORT_HTML = "report.html"
FIGURE_FORMATS = ("pdf", "svg")  # written beside each PNG, for papers
REPORT_FILES = (
    *(name.replace(".png", f".{suffix}") for name in (ROC_PNG, ACCURACY_PNG) for suffix in ("png", *FIGURE_FORMATS)),
    REPORT_HTML,
)
OVERLAY_CSV = "overlay.csv"  # an overlay's results of every run, side by side (report --out only)
OVERLAY_FILES = (*REPORT_FILES, OVERLAY_CSV)

# The columns each table must have for a run to be read back, and what their values are. Readers rely on
# these (the console table, the figures, the report); other columns are kept as they are.
COLUMNS: dict[str, dict[str, type]] = {
    RESULTS: {
        "df": int,
        "probe_px": str,
        "interocular_px": float,
        "accuracy_mean": float,
        "accuracy_std": float,
        "accuracy_sem": float,
        "auc": float,
        "eer": float,
        "tar_at_far_0.001": float,
        "tar_at_far_0.01": float,
    },
    FOLDS: {"df": int, "fold": int, "accuracy": float, "threshold": float},
    ROC: {"df": int, "fpr": float, "tpr": float},
    SCORES: {"pair": int, "fold": int, "same": int, "image_a": str, "image_b": str, "df": int, "score": float},
}
# Columns a table may have (runs written before they existed lack them); an empty cell means "no value".
OPTIONAL_COLUMNS: dict[str, dict[str, type]] = {
    RESULTS: {
        f"{metric}_ci_{end}": float
        for metric in ("accuracy", "auc", "tar_at_far_0.001", "tar_at_far_0.01")
        for end in ("low", "high")
    },
    SCORES: {"person_a": str, "person_b": str},  # empty: the protocol names nobody (a .bin)
}
# The data dictionary of results.csv: unit and meaning of each column. Rates are stored as fractions (0–1)
# so that files stay exact and machine-readable; the console table and report.html show them as percent
# (AUC stays a fraction there too). write_run copies this into the manifest ("columns").
_RATE = "fraction 0–1"
RESULT_COLUMNS: dict[str, tuple[str, str]] = {
    "df": ("integer", "degradation factor: the probe is the crop divided by DF in each dimension"),
    "probe_w": ("px", "width of the degraded probe"),
    "probe_h": ("px", "height of the degraded probe"),
    "probe_px": ("px", "probe size, width×height"),
    "interocular_px": ("px", "distance between the eye centres in the degraded probe"),
    "accuracy_mean": (_RATE, "verification accuracy, mean over the reported folds"),
    "accuracy_std": (_RATE, "population standard deviation (ddof=0) of the fold accuracies"),
    "accuracy_sem": (_RATE, "standard error of the mean fold accuracy (ddof=1)"),
    "auc": (_RATE, "area under the ROC curve, all reported pairs pooled"),
    "eer": (_RATE, "equal error rate: where false accept rate = false reject rate"),
    "tar_at_far_0.001": (_RATE, "true accept rate at false accept rate 0.001 (0.1 %); empty: fewer than 1000 "
                         "impostor pairs, so 0.1 % of them is less than one pair and cannot be measured"),
    "tar_at_far_0.01": (_RATE, "true accept rate at false accept rate 0.01 (1 %); empty: fewer than 100 impostor "
                        "pairs"),
    "pairs": ("count", "pairs in the reported folds"),
    "embedding_norm": ("L2 norm", "mean norm of the network's output for the images computed at this DF (the "
                       "probes; both sides with --mode both), before fusion: insightface's XNorm, a check of the "
                       "input convention"),
    **{
        f"{metric}_ci_{end}": (_RATE, f"{end} end of the 95 % identity-bootstrap interval of {metric}; empty: none")
        for metric in ("accuracy", "auc", "tar_at_far_0.001", "tar_at_far_0.01")
        for end in ("low", "high")
    },
}

# Required columns whose cell may be empty: a TAR at a FAR below one impostor pair is not measured (NaN).
_MAY_BE_EMPTY = {"tar_at_far_0.001", "tar_at_far_0.01"}

# The columns that identify a row: a second row with the same values is damage (the report pivots on them).
KEYS = {RESULTS: ("df",), FOLDS: ("df", "fold"), SCORES: ("df", "pair")}
RUN_FILES = (MANIFEST, *COLUMNS, *REPORT_FILES)

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

_THRESHOLD_RULES = {
    "exact": "per fold, the threshold maximising accuracy on the other folds, found exactly from the sorted "
    "scores (midpoint of the best interval; ties go to the highest interval); 'same' if score > threshold",
    "grid": "the seed project's rule: thresholds -1…1 in 10001 steps, chosen on the other folds, ties go to "
    "the largest; 'same' if score > threshold; for cosine scores only (refused for other scores)",
}
_FUSIONS = {
    "concat": "features of the face and of its mirror image concatenated (as the seed)",
    "sum": "features of the face and of its mirror image added",
    "none": "features of the face only",
}
_SCORES = {
    "cosine": "cosine similarity of the fused features",
    "euclidean": "negative Euclidean distance between the fused features",
}
_MODES = {
    "both": "both images of every pair degraded (LR vs LR, as the seed)",
    "probe": "only the second image of every pair degraded (HR gallery vs LR probe)",
}


def definitions(
    metric: str, fusion: str, threshold_rule: str, mode: str, report_folds: list[int] | None = None
) -> dict[str, str]:
    """The four choices toolboxes disagree on (score, threshold, fusion, spread), stated in words."""
    aggregation = "accuracy is the mean of the per-fold accuracies; AUC, EER, TAR@FAR and ROC pool all reported pairs"
    if report_folds:
        aggregation += f"; only folds {report_folds} are reported, each thresholded on all the other folds"
    return {
        "score": _SCORES[metric],
        "threshold": _THRESHOLD_RULES[threshold_rule],
        "flip_fusion": _FUSIONS[fusion],
        "spread": "accuracy_std: population standard deviation (ddof=0) of the fold accuracies; "
        "accuracy_sem: sample standard deviation (ddof=1) / sqrt(folds)",
        "aggregation": aggregation,
        "degraded": _MODES[mode],
        "intervals": describe_intervals(),
        "units": "results.csv stores rates (accuracy, std, AUC, EER, TAR and their intervals) as fractions 0–1; "
        "tables and reports show them as percent, except AUC (a fraction); manifest 'columns' lists every column",
    }


@dataclass
class RunData:
    """Everything a run directory holds, as tables."""

    manifest: dict
    results: pd.DataFrame  # one row per DF
    folds: pd.DataFrame  # df, fold, accuracy, threshold
    roc: pd.DataFrame  # df, fpr, tpr
    scores: pd.DataFrame  # one row per pair and DF
    path: Path | None = None
    recomputed: dict | None = field(default=None, repr=False)  # per DF, the metrics load_run checked against

    @property
    def label(self) -> str:
        return self.manifest.get("label") or self.manifest.get("backbone", "run")

    @property
    def reported_folds(self) -> list[int]:
        """The folds folds.csv reports (all of them, or those of ``--report-folds``)."""
        return sorted(int(fold) for fold in self.folds["fold"].unique())

    @classmethod
    def from_sweep(cls, manifest, rows, fold_rows, roc_rows, scores: dict[int, np.ndarray], pairs) -> RunData:
        per_pair = pd.DataFrame(
            {
                "pair": np.arange(len(pairs.same)),
                "fold": pairs.folds + 1,
                "same": pairs.same.astype(int),
                "image_a": [pairs.images[i] for i in pairs.first],
                "image_b": [pairs.images[i] for i in pairs.second],
                "person_a": [pairs.identities[i] for i in pairs.first] if pairs.identities else "",
                "person_b": [pairs.identities[i] for i in pairs.second] if pairs.identities else "",
            }
        )
        score_table = pd.concat([per_pair.assign(df=df, score=values) for df, values in scores.items()])
        return cls(manifest, pd.DataFrame(rows), pd.DataFrame(fold_rows), pd.DataFrame(roc_rows), score_table)


def pair_people(scores: pd.DataFrame) -> tuple[list[str | None], list[str | None]]:
    """The two people of each row of a scores table, as the bootstrap resamples them: scores.csv's person_a and
    person_b (an empty cell: unknown, the pair is its own unit); for a run written before scores.csv held
    them, the folders its images are in, the rule its intervals were computed with."""
    if "person_a" not in scores.columns:
        return [identity_of(image) for image in scores["image_a"]], [identity_of(image) for image in scores["image_b"]]
    return ([None if pd.isna(person) or person == "" else str(person) for person in scores[column]]
            for column in ("person_a", "person_b"))


def write_run(run: RunData, out: Path, overwrite: bool = False, render: Callable | None = None) -> Path:
    """Write the run directory into a temporary sibling, then swap it into place.

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
    """
    out = Path(out)
    recover_run_dir(out)
    check_run_target(out, overwrite)
    # when (report.html's "written") and what each results.csv column holds, in what unit
    run.manifest.setdefault("created", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"))
    run.manifest.setdefault("columns", {RESULTS: {name: {"unit": unit, "meaning": meaning}
                                                  for name, (unit, meaning) in RESULT_COLUMNS.items()}})
    with built_in_place(out) as tmp:
        write_atomic(tmp / MANIFEST, json.dumps(run.manifest, indent=2, default=_json_default) + "\n")
        for name, table in ((RESULTS, run.results), (FOLDS, run.folds), (ROC, run.roc)):
            write_atomic(tmp / name, table.to_csv(index=False))
        write_atomic(tmp / SCORES, run.scores.to_csv(index=False, float_format="%.8g"))
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
    manifest.json is an lrbench run manifest and which holds nothing but the files of a run directory.
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
    """Why ``path`` is not a complete run directory that lrbench may replace, or None if it is one."""
    if not (path / MANIFEST).is_file():
        return f"no {MANIFEST}; it holds {_some(sorted(path.iterdir()))}"
    try:
        read_manifest(path)
    except DataError:
        return f"its {MANIFEST} is not an lrbench run manifest"
    missing = [name for name in COLUMNS if not (path / name).is_file()]
    if missing:
        return f"no {', '.join(missing)}"
    foreign = [entry for entry in sorted(path.iterdir()) if not is_own_file(entry, RUN_FILES)]
    if foreign:
        return f"it holds {_some(foreign)}, which lrbench did not write"
    return None


def check_report_folder(target: Path) -> None:
    """Refuse an overlay's ``--out`` that would overwrite a run's own report or mix into someone's folder.

    Accepted: a new or empty folder, or one holding only report files and run directories (an earlier
    overlay, or a demo's folder with its runs).
    """
    target = Path(target)
    if not target.is_dir():
        return
    if (target / MANIFEST).exists():
        raise UsageError(
            f"--out {target}: is a run directory, and its {REPORT_HTML} is that run's own report; "
            f"choose another folder (`lrbench report {target}` alone re-renders it)"
        )
    foreign = [
        entry
        for entry in sorted(target.iterdir())
        if not is_own_file(entry, OVERLAY_FILES) and not (entry.is_dir() and run_dir_problem(entry) is None)
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


def load_run(path: Path) -> RunData:
    """Read a run directory back, checked: any damage is one DataError naming the file (and line)."""
    path = Path(path)
    if not path.is_dir():
        raise UsageError(f"{path}: not a run directory")
    manifest = read_manifest(path)
    if manifest.get("kind") == "identification":
        raise UsageError(
            f"{path}: an identification run, not a verification run (its pairs, folds and scores are not there)"
        )
    tables = [read_table(path / name) for name in COLUMNS]
    run = RunData(manifest, *tables, path=path)
    run.recomputed = recompute(run)
    check_derived(run, run.recomputed)
    _clear_unmeasured(run)
    return run


# -- what results.csv, folds.csv and roc.csv say must follow from scores.csv ------------------------------------
# scores.csv keeps 8 significant digits. Accuracies count pairs on either side of a threshold, so they must
# agree exactly; a tie that the rounding creates between a same and a different pair moves AUC, EER and
# TAR@FAR by about 1/(same pairs × different pairs), far below this; thresholds move by the rounding itself.
COUNT_TOLERANCE = 1e-9
RATE_TOLERANCE = 1e-6
THRESHOLD_TOLERANCE = 1e-6  # relative to the threshold's size, at least 1


def reported_folds(run: RunData) -> list[int] | None:
    """The folds the run reports (its ``--report-folds``, 1-based), or None for all of them."""
    text = run.manifest.get("settings", {}).get("report_folds")
    if text is None:
        return None
    folds = int(run.scores["fold"].max())
    try:
        return parse_ranges(str(text), "report_folds", unit="fold", low=1, high=folds,
                            bound=f"the {folds} folds of its {SCORES}", example="1, 2-10 or 1,3")
    except UsageError as exc:
        raise DataError(f"{Path(run.path) / MANIFEST}: settings.{exc}") from None


def recompute(run: RunData) -> dict[int, VerificationResult]:
    """Each DF's metrics from scores.csv, with the run's threshold rule and reported folds.

    A merged cross-validated run (``lrbench.report.crossval``) holds only each fold's held-out scores, while fold k's
    threshold was chosen on the other folds' scores of fold k's own model, which it does not hold: there the
    thresholds of folds.csv are taken as given and each fold's accuracy is recomputed with its threshold.
    """
    rule = run.manifest.get("settings", {}).get("threshold_rule", "exact")
    merged = "cross_validation" in run.manifest
    folds = None if merged else reported_folds(run)
    metrics = {}
    for df, table in run.scores.groupby("df"):
        table = table.sort_values("pair")
        score, same, fold = table["score"].to_numpy(), table["same"].to_numpy(), table["fold"].to_numpy()
        try:
            metrics[int(df)] = evaluate_verification(score, same, fold, rule=rule, report_folds=folds)
        except ValueError as exc:
            raise DataError(f"{Path(run.path) / SCORES}: DF {df}: cannot be scored: {exc}") from None
        if merged:
            metrics[int(df)] = _held_out(run, int(df), metrics[int(df)], score, same.astype(bool), fold)
    return metrics


def _held_out(run: RunData, df: int, pooled: VerificationResult, score, same, fold) -> VerificationResult:
    """A merged run's metrics: pooled ones from all its scores, fold accuracies from folds.csv's thresholds."""
    table = run.folds[run.folds["df"] == df].sort_values("fold")
    if table["fold"].tolist() != pooled.fold_ids.tolist():
        raise DataError(f"{Path(run.path) / FOLDS}: DF {df} lists folds {table['fold'].tolist()}, but this merged "
                        f"cross-validated run's {SCORES} holds folds {pooled.fold_ids.tolist()}")
    right = fold_decisions(score, fold, table["fold"], table["threshold"]) == same
    accuracy = np.array([right[fold == k].mean() for k in pooled.fold_ids])
    return replace(pooled, fold_accuracy=accuracy, fold_threshold=table["threshold"].to_numpy(),
                   accuracy_mean=float(accuracy.mean()), accuracy_std=float(accuracy.std(ddof=0)),
                   accuracy_sem=float(accuracy.std(ddof=1) / np.sqrt(len(accuracy))))


def check_derived(run: RunData, metrics: dict[int, VerificationResult]) -> None:
    """Refuse a run whose folds.csv, results.csv or roc.csv is not what its scores.csv gives (an edited or
    mixed-up file): per DF, the per-fold numbers first (the root of the others), then the results row, then
    the curve's area; the error names the file, the row and both values."""
    path, scores = Path(run.path), Path(run.path) / SCORES
    stored = sorted(int(df) for df in run.results["df"])
    if stored != sorted(metrics):
        raise DataError(f"{path / RESULTS}: reports DFs {stored}, but {scores} has scores for DFs {sorted(metrics)}")
    for row in run.results.to_dict("records"):
        df = int(row["df"])
        result = metrics[df]
        folds = run.folds[run.folds["df"] == df].sort_values("fold")
        if folds["fold"].tolist() != result.fold_ids.tolist():
            raise DataError(f"{path / FOLDS}: DF {df} lists folds {folds['fold'].tolist()}, but the run reports "
                            f"folds {result.fold_ids.tolist()} (its {MANIFEST}, settings.report_folds)")
        for fold, accuracy, threshold, accuracy_again, threshold_again in zip(
            folds["fold"], folds["accuracy"], folds["threshold"], result.fold_accuracy, result.fold_threshold
        ):
            _agree(path / FOLDS, f"DF {df} fold {fold} accuracy", accuracy, accuracy_again, COUNT_TOLERANCE, scores)
            _agree(path / FOLDS, f"DF {df} fold {fold} threshold", threshold, threshold_again,
                   THRESHOLD_TOLERANCE * max(1.0, abs(threshold_again)), scores)
        expected = {
            "accuracy_mean": (result.accuracy_mean, COUNT_TOLERANCE),
            "accuracy_std": (result.accuracy_std, COUNT_TOLERANCE),
            "accuracy_sem": (result.accuracy_sem, COUNT_TOLERANCE),
            "auc": (result.auc, RATE_TOLERANCE),
            "eer": (result.eer, RATE_TOLERANCE),
            # a FAR below one impostor pair has no TAR; runs written before the rule still hold one (cleared on read)
            **{f"tar_at_far_{far:g}": (tar, RATE_TOLERANCE) for far, tar in result.tar_at_far.items()
               if not np.isnan(tar)},
        }
        if "pairs" in row:
            expected["pairs"] = (reported_pairs(run, df, result), 0)
        for column, (value, tolerance) in expected.items():
            _agree(path / RESULTS, f"DF {df} {column}", row[column], value, tolerance, scores)
        curve = run.roc[run.roc["df"] == df].sort_values(["fpr", "tpr"])
        if len(curve) < 2:
            raise DataError(f"{path / ROC}: no curve for DF {df}, which {path / RESULTS} reports")
        _agree(path / ROC, f"DF {df} area under the curve", curve_area(curve["fpr"], curve["tpr"]), result.auc,
               RATE_TOLERANCE, scores)


def reported_pairs(run: RunData, df: int, result: VerificationResult) -> int:
    """How many of the run's pairs at ``df`` lie in the folds ``result`` reports."""
    scores = run.scores[run.scores["df"] == df]
    return int(scores["fold"].isin(result.fold_ids).sum())


def _clear_unmeasured(run: RunData) -> None:
    """A TAR at a FAR below one impostor pair, which runs written before the rule still hold, read as missing."""
    for row, result in ((index, run.recomputed[int(df)]) for index, df in run.results["df"].items()):
        for far, tar in result.tar_at_far.items():
            if np.isnan(tar):
                run.results.loc[row, f"tar_at_far_{far:g}"] = np.nan


def _agree(file: Path, what: str, stored, recomputed, tolerance: float, scores: Path) -> None:
    if not abs(float(stored) - float(recomputed)) <= tolerance:  # NaN never agrees
        raise DataError(f"{file}: {what} is {float(stored):.10g}, but {scores} gives {float(recomputed):.10g}; "
                        "these files are not the output of one run")


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


def read_table(path: Path) -> pd.DataFrame:
    """One CSV table of a run directory, with the columns ``COLUMNS`` requires for it, typed and checked."""
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
    missing = [column for column in COLUMNS[path.name] if column not in header]
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
    optional = OPTIONAL_COLUMNS.get(path.name, {})
    for column in header:
        kind = COLUMNS[path.name].get(column) or optional.get(column)
        table[column] = (
            _typed(path, lines, table[column], kind, may_be_empty=column in optional or column in _MAY_BE_EMPTY)
            if kind
            else _numeric_if_possible(table[column])
        )
    key = list(KEYS.get(path.name, ()))
    repeated = np.flatnonzero(table.duplicated(key).to_numpy()) if key else []
    if len(repeated):
        which = ", ".join(f"{column} {table[column].iloc[repeated[0]]}" for column in key)
        raise DataError(f"{path}:{lines[repeated[0]]}: a second row for {which}")
    return table


def _typed(path: Path, lines: list[int], values: pd.Series, kind: type, may_be_empty: bool = False) -> pd.Series:
    """A known column converted to ``kind``; the first bad value is an error with its file and line."""
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
    return converted.astype("int64") if kind is int else converted


def _numeric_if_possible(values: pd.Series) -> pd.Series:
    try:
        return pd.to_numeric(values)
    except ValueError:
        return values


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")
