"""Merge the held-out folds of N per-fold runs into one run directory: a k-fold cross-validated result.

LFW's standard number for a model trained on the pairs' own people is 10-fold cross-validation: the model
for fold k is trained on the people of the other nine folds and tested on fold k, its threshold chosen on
those nine (``lrbench run --report-folds k``). Each such run scores every pair, but only fold k is
held out for its model; this module takes fold k's rows from the run of fold k and writes them as one
ordinary run directory (``lrbench report`` and ``lrbench compare`` read it as any other), whose
manifest names every fold's run, command and weights.

A merge of some of the folds (``partial=True``) is such a run too, of fewer folds, and a later merge takes
its folds as they are: a cross-validation that takes several sessions keeps a small merged run of the folds
done so far (a tenth of a full per-fold run each), not every per-fold run.

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
from .results import SCORES, RunData, claim_run_dir, load_run, scores_intervals, write_run

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


def held_out_folds(run: RunData) -> list[int]:
    """The folds a run holds out: a per-fold run's one reported fold, or each fold of a merged run."""
    if "cross_validation" in run.manifest:
        return sorted(int(entry["fold"]) for entry in run.manifest["cross_validation"]["folds"])
    return list(run.reported_folds or [])


def assign_folds(runs: Mapping[int, Path] | Iterable[Path]) -> dict[int, RunData]:
    """Each fold's run, loaded and checked to hold that fold out (a per-fold ``--report-folds k`` run, or a merged
    run of several folds, which serves each of them); a plain list of run directories is assigned by the folds
    each holds out (two holding one fold are refused)."""
    if isinstance(runs, Mapping):
        loaded = {int(fold): load_run(Path(path)) for fold, path in runs.items()}
        for fold, run in loaded.items():
            if fold not in held_out_folds(run) or (len(held_out_folds(run)) > 1 and "cross_validation" not in
                                                    run.manifest):
                raise UsageError(
                    f"{run.path}: reports fold {', '.join(map(str, run.reported_folds))}, not fold {fold} it is merged "
                    f"as; evaluate it with --report-folds {fold}"
                )
        return loaded
    loaded = {}
    for path in runs:
        run = load_run(Path(path))
        folds = held_out_folds(run)
        if len(folds) != 1 and "cross_validation" not in run.manifest:
            raise UsageError(
                f"{run.path}: reports folds {', '.join(map(str, folds))}; a held-out run reports one fold "
                "(--report-folds K)"
            )
        for fold in folds:
            if fold in loaded:
                raise UsageError(
                    f"{run.path}: reports fold {fold}, as {loaded[fold].path} does; give each fold once"
                )
            loaded[fold] = run
    return loaded


def _check_mergeable(runs: dict[int, RunData], partial: bool = False) -> tuple[list[int], list[int]]:
    """The DFs and all the folds of runs that scored the same pairs of the same faces the same way; else an
    error. Without ``partial`` every fold must have its run."""
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
    _check_pairs(runs)
    all_folds = _all_folds(runs)
    unknown = sorted(set(runs) - set(all_folds))
    if unknown:
        raise UsageError(
            f"fold {', '.join(map(str, unknown))}: not a fold of {first.path / SCORES} (folds "
            f"{all_folds[0]}…{all_folds[-1]})"
        )
    missing = sorted(set(all_folds) - set(runs))
    if missing and not partial:
        raise UsageError(
            f"fold {brief_list([str(fold) for fold in missing])}: no run given; a merged result needs a held-out "
            f"run for each of the {len(all_folds)} folds"
        )
    return sorted(int(df) for df in first.results["df"]), all_folds


def _all_folds(runs: dict[int, RunData]) -> list[int]:
    """Every fold of the protocol: those of a per-fold run's scores (it scores every pair), or as a merged run
    records them."""
    for run in runs.values():
        if "cross_validation" not in run.manifest:
            return sorted(int(fold) for fold in run.scores["fold"].unique())
    first = runs[min(runs)]
    recorded = first.manifest["cross_validation"].get("all_folds")
    return sorted(recorded) if recorded else held_out_folds(first)


def _check_pairs(runs: dict[int, RunData]) -> None:
    """Each fold's pairs as every run that holds them lists them (a per-fold run lists every pair, a merged run
    its own folds'): same manifests but another pair list means the scores were written for other pairs."""
    reference = next((run for run in runs.values() if "cross_validation" not in run.manifest), None)
    for fold, run in sorted(runs.items()):
        if reference is not None and run is not reference and not _pairs(run, fold).equals(_pairs(reference, fold)):
            raise DataError(
                f"{run.path / SCORES}: lists other pairs than {reference.path / SCORES} (same manifests, but the "
                "scores were not written for the same pair list)"
            )


def _pairs(run: RunData, fold: int) -> pd.DataFrame:
    scores = run.scores
    rows = (scores["df"] == scores["df"].iloc[0]) & (scores["fold"] == fold)
    return scores.loc[rows, _PAIR_COLUMNS].sort_values("pair").reset_index(drop=True)


def _results_row(template: dict, scores: pd.DataFrame, folds: pd.DataFrame) -> tuple[dict, VerificationResult]:
    """One results.csv row from the merged held-out scores and the folds' own accuracies and thresholds."""
    score, same, fold = scores["score"].to_numpy(), scores["same"].to_numpy().astype(bool), scores["fold"].to_numpy()
    given = dict(zip(folds["fold"].astype(int), folds["threshold"].astype(float)))
    pooled = evaluate_verification(score, same, fold, fars=FARS, thresholds=given)  # its pooled metrics only
    accuracy = folds["accuracy"].to_numpy(dtype=float)
    intervals = scores_intervals(scores, folds["fold"].to_numpy(), folds["threshold"].to_numpy(), FARS)
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


def _fold_record(run: RunData, fold: int, facts: dict) -> dict:
    """What the merged manifest says of fold ``fold``: the run it came from (its path, label, command, weights,
    versions, timings, its model's mean embedding norm per DF) and ``facts``; a merged run's record as it is."""
    if "cross_validation" in run.manifest:
        return next(entry for entry in run.manifest["cross_validation"]["folds"] if int(entry["fold"]) == fold)
    norms = run.results.set_index("df")["embedding_norm"] if "embedding_norm" in run.results else None
    return {
        "fold": fold,
        "run": str(Path(run.path).resolve()),
        "label": run.manifest.get("label"),
        "command": run.manifest.get("command"),
        "created": run.manifest.get("created"),
        "weights": run.manifest.get("weights"),
        "versions": run.manifest.get("versions"),
        "timings": run.manifest.get("timings"),
        **({"embedding_norm": {str(int(df)): float(norm) for df, norm in norms.items()}} if norms is not None else {}),
        **facts,
    }


def _manifest(runs: dict[int, RunData], all_folds: list[int], label: str | None, command: str | None,
              fold_facts: Mapping[int, dict] | None, facts: Mapping | None) -> dict:
    source = next((run for run in runs.values() if "cross_validation" not in run.manifest), runs[min(runs)])
    manifest = copy.deepcopy(source.manifest)
    for key in _PER_RUN:
        manifest.pop(key, None)
    partial = "" if sorted(runs) == all_folds else f", folds {fold_spans(sorted(runs))} of {len(all_folds)} so far"
    manifest["label"] = (label or f"{source.manifest['backbone']} ({len(all_folds)}-fold cross-validation)") + partial
    manifest["settings"] = {**manifest.get("settings", {}), "report_folds": None, "weights": None,
                            "label": manifest["label"]}
    records = [_fold_record(runs[fold], fold, (fold_facts or {}).get(fold, {})) for fold in sorted(runs)]
    manifest["weights"] = {"value": None, "file": None, "sha256": None, "per_fold_sha256": {
        str(record["fold"]): (record.get("weights") or {}).get("sha256") for record in records}}
    if command:
        manifest["command"] = command
    definitions = manifest.setdefault("definitions", {})
    definitions["aggregation"] = (
        "merged held-out folds: fold k's pairs, accuracy and threshold come from the run of the model trained "
        "without fold k (lrbench run --report-folds k, threshold chosen on the other folds with that model's "
        "scores); accuracy is the mean of the per-fold accuracies; AUC, EER, TAR@FAR and ROC pool every fold's "
        "held-out scores, each pair scored by its own fold's model"
    )
    manifest["cross_validation"] = {**(facts or {}), "kind": KIND, "all_folds": all_folds, "folds": records}
    return manifest


def fold_spans(folds: list[int]) -> str:
    """[1, 2, 3, 5] → "1-3,5": the form --people-folds, --report-folds and --folds take."""
    spans: list[list[int]] = []
    for fold in folds:
        if spans and fold == spans[-1][1] + 1:
            spans[-1][1] = fold
        else:
            spans.append([fold, fold])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def merge(runs: dict[int, RunData], label: str | None = None, command: str | None = None,
          fold_facts: Mapping[int, dict] | None = None, *, partial: bool = False,
          facts: Mapping | None = None) -> RunData:
    """The merged run, in memory: fold k's scores and fold row from ``runs[k]``, pooled metrics recomputed.
    ``partial`` merges the folds given when others are still to come; ``facts`` go into the manifest's
    ``cross_validation`` (e.g. the recipe every fold shares)."""
    dfs, all_folds = _check_mergeable(runs, partial)
    manifest = _manifest(runs, all_folds, label, command, fold_facts, facts)
    norms = {int(record["fold"]): record.get("embedding_norm") for record in manifest["cross_validation"]["folds"]}
    template_run = runs[min(runs)]
    rows, fold_rows, roc_rows, score_parts = [], [], [], []
    for df in dfs:
        scores = pd.concat([run.scores[(run.scores["df"] == df) & (run.scores["fold"] == fold)]
                            for fold, run in sorted(runs.items())]).sort_values("pair")
        fold_table = pd.concat([run.folds[(run.folds["df"] == df) & (run.folds["fold"] == fold)]
                                for fold, run in sorted(runs.items())])
        fold_table = fold_table[["df", "fold", "accuracy", "threshold"]].sort_values("fold")
        template = template_run.results[template_run.results["df"] == df].iloc[0].to_dict()
        row, pooled = _results_row(template, scores, fold_table)
        if all(norms.values()):  # each fold's model's own mean norm; their mean (runs before it lack one)
            row["embedding_norm"] = float(np.mean([norm[str(df)] for norm in norms.values()]))
        rows.append(row)
        fold_rows.append(fold_table)
        roc_rows.extend({"df": df, "fpr": f, "tpr": t} for f, t in zip(pooled.roc_fpr, pooled.roc_tpr))
        score_parts.append(scores)
    merged = pd.concat(score_parts, ignore_index=True)  # every pair once per DF: each pair has one fold
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
    partial: bool = False,
    facts: Mapping | None = None,
) -> RunData:
    """Merge per-fold ``--report-folds k`` runs (``{k: run_dir}``, or run directories assigned by the folds
    each holds out; a merged run serves each of its folds) into the run directory ``out``, with its report;
    returns the merged run. ``fold_facts[k]`` adds provenance to fold k's record in the manifest (e.g. how its
    model was trained); ``partial`` allows folds still missing."""
    loaded = assign_folds(runs)
    run = merge(loaded, label, command, fold_facts, partial=partial, facts=facts)
    with claim_run_dir(Path(out), overwrite, command=command or ""):
        write_run(run, Path(out), overwrite, render=render_run)
    return run
