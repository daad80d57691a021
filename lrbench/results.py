"""A run's results in memory and on disk: the run directory, written atomically, and read back."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError, UsageError

MANIFEST = "manifest.json"
RESULTS = "results.csv"
FOLDS = "folds.csv"
ROC = "roc.csv"
SCORES = "scores.csv"

_THRESHOLD_RULES = {
    "exact": "per fold, the threshold maximising accuracy on the other folds, found exactly from the sorted "
    "scores (midpoint of the best interval; ties go to the highest interval); 'same' if score > threshold",
    "grid": "the seed project's rule: thresholds -1…1 in 10001 steps, chosen on the other folds, ties go to "
    "the largest; 'same' if score > threshold",
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

    @property
    def label(self) -> str:
        return self.manifest.get("label") or self.manifest.get("backbone", "run")

    @classmethod
    def from_sweep(cls, manifest, rows, fold_rows, roc_rows, scores: dict[int, np.ndarray], pairs) -> RunData:
        per_pair = pd.DataFrame(
            {
                "pair": np.arange(len(pairs.same)),
                "fold": pairs.folds + 1,
                "same": pairs.same.astype(int),
                "image_a": [pairs.images[i] for i in pairs.first],
                "image_b": [pairs.images[i] for i in pairs.second],
            }
        )
        score_table = pd.concat([per_pair.assign(df=df, score=values) for df, values in scores.items()])
        return cls(manifest, pd.DataFrame(rows), pd.DataFrame(fold_rows), pd.DataFrame(roc_rows), score_table)


def write_run(run: RunData, out: Path, overwrite: bool = False, render=None) -> Path:
    """Write the run directory into a temporary sibling, then rename it into place.

    ``render(run, folder)`` adds figures and the report before the rename, so a reader never sees a
    half-written run.
    """
    out = Path(out)
    if out.exists() and not overwrite and (out.is_file() or any(out.iterdir())):
        raise UsageError(f"--out {out}: already exists; choose another folder or pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        _write_json(tmp / MANIFEST, run.manifest)
        run.results.to_csv(tmp / RESULTS, index=False)
        run.folds.to_csv(tmp / FOLDS, index=False)
        run.roc.to_csv(tmp / ROC, index=False)
        run.scores.to_csv(tmp / SCORES, index=False, float_format="%.8g")
        run.path = out
        if render is not None:
            render(run, tmp)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def load_run(path: Path) -> RunData:
    """Read a run directory back; a folder that is not one gets an error naming the missing file."""
    path = Path(path)
    if not path.is_dir():
        raise UsageError(f"{path}: not a run directory")
    for name in (MANIFEST, RESULTS, FOLDS, ROC, SCORES):
        if not (path / name).is_file():
            raise DataError(f"{path}: not a complete run directory (no {name})")
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        tables = [pd.read_csv(path / name) for name in (RESULTS, FOLDS, ROC, SCORES)]
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read run directory: {exc}") from exc
    return RunData(manifest, *tables, path=path)


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def write_text_atomic(path: Path, text: str | bytes) -> None:
    """Replace a single file atomically (used when re-rendering an existing run)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}", suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        handle.write(text.encode() if isinstance(text, str) else text)
    os.replace(tmp, path)
