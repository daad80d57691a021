"""A run's results in memory and on disk: the run directory, written atomically, and read back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import auc as curve_area

from ..errors import DataError, UsageError
from ..ranges import parse_ranges
from . import rundir
from .metrics import VerificationResult, evaluate_verification
from .rundir import (  # noqa: F401  (the names a verification run's readers have always imported from here)
    ACCURACY_PNG,
    FIGURE_FORMATS,
    FOLDS,
    MANIFEST,
    OVERLAY_CSV,
    REPORT_HTML,
    RESULTS,
    ROC,
    ROC_PNG,
    SCORES,
    VERIFICATION,
    check_report_folder,
    check_run_target,
    claim_run_dir,
    is_own_file,
    read_manifest,
    read_run_files,
    read_table,
    recover_run_dir,
    run_dir_problem,
)
from .stats import describe as describe_intervals
from .stats import identity_of, result_intervals

# What a run directory holds (the data files, then the files ``report.render`` adds): ``rundir.VERIFICATION``.
COLUMNS = VERIFICATION.columns
OPTIONAL_COLUMNS = VERIFICATION.optional_columns
KEYS = VERIFICATION.keys
REPORT_FILES = VERIFICATION.report_files
OVERLAY_FILES = VERIFICATION.overlay_files
RUN_FILES = VERIFICATION.run_files
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
    layout = VERIFICATION

    def tables(self) -> dict[str, pd.DataFrame]:
        """The run's tables by file name, as ``rundir.write_run`` writes them."""
        return {RESULTS: self.results, FOLDS: self.folds, ROC: self.roc, SCORES: self.scores}

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


def scores_intervals(scores: pd.DataFrame, fold_ids: np.ndarray, thresholds: np.ndarray, fars) -> dict[str, float]:
    """A results row's interval columns from one DF's rows of a scores table and its folds' thresholds, as
    ``lrbench run`` computes them."""
    return result_intervals(scores["score"].to_numpy(), scores["same"].to_numpy().astype(bool),
                            scores["fold"].to_numpy(), *pair_people(scores), fold_ids, thresholds, fars)


def load_run(path: Path) -> RunData:
    """Read a run directory back, checked: any damage is one DataError naming the file (and line)."""
    manifest, tables = read_run_files(path, VERIFICATION.kind)
    run = RunData(manifest, *tables.values(), path=Path(path))
    run.recomputed = recompute(run)
    check_derived(run, run.recomputed)
    _clear_unmeasured(run)
    return run


def write_run(run: RunData, out: Path, overwrite: bool = False, render: Callable | None = None) -> Path:
    """``rundir.write_run``, with the manifest stating what each results.csv column holds, in what unit."""
    run.manifest.setdefault("columns", {RESULTS: {name: {"unit": unit, "meaning": meaning}
                                                  for name, (unit, meaning) in RESULT_COLUMNS.items()}})
    return rundir.write_run(run, out, overwrite, render)


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
        thresholds = _given_thresholds(run, int(df), fold) if merged else None
        try:
            metrics[int(df)] = evaluate_verification(score, same, fold, rule=rule, report_folds=folds,
                                                     thresholds=thresholds)
        except ValueError as exc:
            raise DataError(f"{Path(run.path) / SCORES}: DF {df}: cannot be scored: {exc}") from None
    return metrics


def _given_thresholds(run: RunData, df: int, fold: np.ndarray) -> dict[int, float]:
    """A merged run's thresholds at ``df`` by fold, as folds.csv gives them; its folds must be the scores'."""
    table = run.folds[run.folds["df"] == df].sort_values("fold")
    held = sorted(int(k) for k in np.unique(fold))
    if table["fold"].tolist() != held:
        raise DataError(f"{Path(run.path) / FOLDS}: DF {df} lists folds {table['fold'].tolist()}, but this merged "
                        f"cross-validated run's {SCORES} holds folds {held}")
    return dict(zip(table["fold"].astype(int), table["threshold"].astype(float)))


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
