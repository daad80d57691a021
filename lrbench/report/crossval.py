"""Merge the held-out folds of N per-fold runs into one run directory: a k-fold cross-validated result.

LFW's standard number for a model trained on the pairs' own people is 10-fold cross-validation: the model
for fold k is trained on the people of the other nine folds and tested on fold k, its threshold chosen on
those nine (``lrbench run --report-folds k``). Each such run scores every pair, but only fold k is
held out for its model; this module takes fold k's rows from the run of fold k and writes them as one
ordinary run directory (``lrbench report`` and ``lrbench compare`` read it as any other), whose
manifest names every fold's run, command and weights.

What each number of the merged run is: a fold's accuracy and threshold are exactly those its own run
reported; accuracy_mean/std/sem are taken over the fold accuracies as for a normal run; AUC, EER, TAR@FAR
and the ROC pool the held-out scores of all folds, each pair scored by its fold's model (pooling assumes the
fold models' scores share one scale, as students distilled from one teacher's features do); the bootstrap
intervals keep each pair's decision by its fold's threshold.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError, UsageError, brief_list
from .metrics import VerificationResult, evaluate_verification
from .render import FARS, data_differences, manifest_fact, render_run
from .results import SCORES, RunData, claim_run_dir, load_run, pair_people, write_run
from .stats import result_intervals

KIND = "merged held-out folds"
# How each per-fold run must have scored its pairs to be merged: the data themselves are checked with
# ``report.data_differences``; these are the evaluation's own choices (manifest keys).
_SCORING = {
    "backbone": ("backbone",),
    "degradation": ("degradation", "name"),
    "degraded images": ("degradation", "mode"),
    "flip fusion": ("settings", "fusion"),
    "threshold rule": ("settings", "threshold_rule"),
}
_PAIR_COLUMNS = ["pair", "fold", "same", "image_a", "image_b"]
# Keys of a per-fold manifest that describe that one run (its weights, timings, when and how it ran), kept in
# ``cross_validation.folds`` instead of the merged manifest's top level.
_PER_RUN = ("command", "created", "weights", "timings", "batching", "allocator", "versions", "columns", "label")


def assign_folds(runs: Mapping[int, Path] | Iterable[Path]) -> dict[int, RunData]:
    """Each fold's run, loaded and checked to report that fold alone; a plain list of run directories is
    assigned by the fold each reports (two reporting one fold are refused)."""
    if isinstance(runs, Mapping):
        loaded = {int(fold): load_run(Path(path)) for fold, path in runs.items()}
        for fold, run in loaded.items():
            if run.reported_folds != [fold]:
                raise UsageError(
                    f"{run.path}: reports fold {', '.join(map(str, run.reported_folds))}, not fold {fold} it is merged "
                    f"as; evaluate it with --report-folds {fold}"
                )
        return loaded
    loaded = {}
    for path in runs:
        run = load_run(Path(path))
        folds = run.reported_folds
        if len(folds) != 1:
            raise UsageError(
                f"{run.path}: reports folds {', '.join(map(str, folds))}; a held-out run reports one fold "
                "(--report-folds K)"
            )
        if folds[0] in loaded:
            raise UsageError(
                f"{run.path}: reports fold {folds[0]}, as {loaded[folds[0]].path} does; give each fold once"
            )
        loaded[folds[0]] = run
    return loaded


def _check_mergeable(runs: dict[int, RunData]) -> list[int]:
    """The DFs of runs that scored the same pairs of the same faces the same way; else an error."""
    if not runs:
        raise UsageError("RUNS: no per-fold runs to merge")
    first = runs[min(runs)]
    for fold in sorted(runs):
        run = runs[fold]
        if run is first:
            continue
        different = data_differences([first, run])
        different += [
            f"{name} {manifest_fact(first.manifest, keys)} vs {manifest_fact(run.manifest, keys)}"
            for name, keys in _SCORING.items()
            if manifest_fact(first.manifest, keys) != manifest_fact(run.manifest, keys)
        ]
        dfs = (sorted(first.results["df"]), sorted(run.results["df"]))
        if dfs[0] != dfs[1]:
            different.append(f"DFs {','.join(map(str, dfs[0]))} vs {','.join(map(str, dfs[1]))}")
        if different:
            raise UsageError(f"{run.path}: cannot be merged with {first.path}: different {'; '.join(different)}")
        if not _pairs(first).equals(_pairs(run)):
            raise DataError(
                f"{run.path / SCORES}: lists other pairs than {first.path / SCORES} (same manifests, but the "
                "scores were not written for the same pair list)"
            )
    all_folds = sorted(int(fold) for fold in first.scores["fold"].unique())
    unknown = sorted(set(runs) - set(all_folds))
    if unknown:
        raise UsageError(
            f"fold {', '.join(map(str, unknown))}: not a fold of {first.path / SCORES} (folds "
            f"{all_folds[0]}…{all_folds[-1]})"
        )
    missing = sorted(set(all_folds) - set(runs))
    if missing:
        raise UsageError(
            f"fold {brief_list([str(fold) for fold in missing])}: no run given; a merged result needs a held-out "
            f"run for each of the {len(all_folds)} folds"
        )
    return sorted(int(df) for df in first.results["df"])


def _pairs(run: RunData) -> pd.DataFrame:
    scores = run.scores
    return scores.loc[scores["df"] == scores["df"].iloc[0], _PAIR_COLUMNS].sort_values("pair").reset_index(drop=True)


def _results_row(template: dict, scores: pd.DataFrame, folds: pd.DataFrame) -> tuple[dict, VerificationResult]:
    """One results.csv row from the merged held-out scores and the folds' own accuracies and thresholds."""
    score, same, fold = scores["score"].to_numpy(), scores["same"].to_numpy().astype(bool), scores["fold"].to_numpy()
    pooled = evaluate_verification(score, same, fold, fars=FARS)  # its threshold-free, pooled metrics only
    accuracy = folds["accuracy"].to_numpy(dtype=float)
    intervals = result_intervals(score, same, fold, *pair_people(scores),
                                 folds["fold"].to_numpy(), folds["threshold"].to_numpy(), FARS)
    row = {
        **{key: template[key] for key in ("df", "probe_w", "probe_h", "probe_px", "interocular_px") if key in template},
        "accuracy_mean": float(accuracy.mean()),
        "accuracy_std": float(accuracy.std(ddof=0)),
        "accuracy_sem": float(accuracy.std(ddof=1) / np.sqrt(len(accuracy))) if len(accuracy) > 1 else 0.0,
        "auc": pooled.auc,
        "eer": pooled.eer,
        **{f"tar_at_far_{far:g}": tar for far, tar in pooled.tar_at_far.items()},
        "pairs": len(scores),
        **intervals,
    }
    return row, pooled


def _manifest(runs: dict[int, RunData], label: str | None, command: str | None,
              fold_facts: Mapping[int, dict] | None) -> dict:
    first = runs[min(runs)]
    manifest = copy.deepcopy(first.manifest)
    for key in _PER_RUN:
        manifest.pop(key, None)
    manifest["label"] = label or f"{first.manifest['backbone']} ({len(runs)}-fold cross-validation)"
    manifest["settings"] = {**manifest.get("settings", {}), "report_folds": None, "weights": None,
                            "label": manifest["label"]}
    manifest["weights"] = {"value": None, "file": None, "sha256": None, "per_fold_sha256": {
        str(fold): (runs[fold].manifest.get("weights") or {}).get("sha256") for fold in sorted(runs)}}
    if command:
        manifest["command"] = command
    definitions = manifest.setdefault("definitions", {})
    definitions["aggregation"] = (
        "merged held-out folds: fold k's pairs, accuracy and threshold come from the run of the model trained "
        "without fold k (lrbench run --report-folds k, threshold chosen on the other folds with that model's "
        "scores); accuracy is the mean of the per-fold accuracies; AUC, EER, TAR@FAR and ROC pool every fold's "
        "held-out scores, each pair scored by its own fold's model"
    )
    manifest["cross_validation"] = {
        "kind": KIND,
        "folds": [
            {
                "fold": fold,
                "run": str(Path(runs[fold].path).resolve()),
                "label": runs[fold].manifest.get("label"),
                "command": runs[fold].manifest.get("command"),
                "created": runs[fold].manifest.get("created"),
                "weights": runs[fold].manifest.get("weights"),
                "versions": runs[fold].manifest.get("versions"),
                "timings": runs[fold].manifest.get("timings"),
                **(fold_facts or {}).get(fold, {}),
            }
            for fold in sorted(runs)
        ],
    }
    return manifest


def merge(runs: dict[int, RunData], label: str | None = None, command: str | None = None,
          fold_facts: Mapping[int, dict] | None = None) -> RunData:
    """The merged run, in memory: fold k's scores and fold row from ``runs[k]``, pooled metrics recomputed."""
    dfs = _check_mergeable(runs)
    first = runs[min(runs)]
    rows, fold_rows, roc_rows, score_parts = [], [], [], []
    for df in dfs:
        scores = pd.concat([run.scores[(run.scores["df"] == df) & (run.scores["fold"] == fold)]
                            for fold, run in sorted(runs.items())]).sort_values("pair")
        fold_table = pd.concat([run.folds[run.folds["df"] == df] for _, run in sorted(runs.items())])
        fold_table = fold_table[["df", "fold", "accuracy", "threshold"]].sort_values("fold")
        template = first.results[first.results["df"] == df].iloc[0].to_dict()
        row, pooled = _results_row(template, scores, fold_table)
        norms = [run.results.loc[run.results["df"] == df, "embedding_norm"].iloc[0] for run in runs.values()
                 if "embedding_norm" in run.results]
        if len(norms) == len(runs):  # each fold's model's own mean norm; their mean (runs before it lack one)
            row["embedding_norm"] = float(np.mean(norms))
        rows.append(row)
        fold_rows.append(fold_table)
        roc_rows.extend({"df": df, "fpr": f, "tpr": t} for f, t in zip(pooled.roc_fpr, pooled.roc_tpr))
        score_parts.append(scores)
    merged = pd.concat(score_parts, ignore_index=True)  # every pair once per DF: each pair has one fold
    manifest = _manifest(runs, label, command, fold_facts)
    return RunData(manifest, pd.DataFrame(rows), pd.concat(fold_rows, ignore_index=True), pd.DataFrame(roc_rows),
                   merged)


def merge_held_out_folds(
    runs: Mapping[int, Path] | Iterable[Path],
    out: Path,
    *,
    label: str | None = None,
    command: str | None = None,
    fold_facts: Mapping[int, dict] | None = None,
    overwrite: bool = False,
) -> RunData:
    """Merge per-fold ``--report-folds k`` runs (``{k: run_dir}``, or run directories assigned by the fold
    each reports) into the run directory ``out``, with its report; returns the merged run. ``fold_facts[k]``
    adds provenance to fold k's record in the manifest (e.g. how its model was trained)."""
    loaded = assign_folds(runs)
    run = merge(loaded, label, command, fold_facts)
    with claim_run_dir(Path(out), overwrite, command=command or ""):
        write_run(run, Path(out), overwrite, render=render_run)
    return run

