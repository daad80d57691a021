"""Face-verification metrics for a k-fold pairs protocol (LFW View 2 style).

Each fold is scored with a threshold chosen on the other folds, so the reported accuracy never sees
its own labels when the threshold is picked. AUC, EER and TAR@FAR need no threshold and are computed
once from all pooled scores. A pair is predicted "same" iff ``score > threshold`` (higher = more
similar), the convention of the seed project this harness replaces.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import roc_auc_score, roc_curve

from .stats import measurable_far

THRESHOLD_RULES = ("exact", "grid")

# The seed project's candidate thresholds: cosine similarities in [-1, 1] at a step of 2e-4.
_SEED_GRID = np.linspace(-1.0, 1.0, 10001)


def _check_pairs(scores: ArrayLike, same: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert scores/labels once, so every metric below can trust its inputs."""
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same)
    if scores.ndim != 1 or same.ndim != 1:
        raise ValueError(f"scores and same must be 1-D, got shapes {scores.shape} and {same.shape}")
    if len(scores) != len(same):
        raise ValueError(f"scores and same differ in length: {len(scores)} vs {len(same)}")
    if len(scores) == 0:
        raise ValueError("no pairs: scores is empty")
    n_nan = int(np.isnan(scores).sum())
    if n_nan:
        raise ValueError(f"{n_nan} of {len(scores)} scores are NaN")
    n_inf = int(np.isinf(scores).sum())
    if n_inf:
        raise ValueError(f"{n_inf} of {len(scores)} scores are infinite")
    if same.dtype != bool:
        if not np.isin(same, (0, 1)).all():
            raise ValueError("same must be boolean (or 0/1); found other values")
        same = same.astype(bool)
    return scores, same


def _check_rule(rule: str) -> None:
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"unknown threshold rule {rule!r}; expected one of {', '.join(THRESHOLD_RULES)}")


def _exact_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """Best threshold over every interval between consecutive distinct scores, in one pass.

    With distinct sorted scores u_0 < … < u_{m-1}, interval k (0 ≤ k ≤ m) predicts "different" for
    u_0 … u_{k-1} and "same" for the rest, so its correct count is (negatives among the first k values)
    + (positives among the rest): two cumulative sums. Counts are integers, so ties are exact.
    """
    values, inverse = np.unique(scores, return_inverse=True)
    m = len(values)
    pos = np.bincount(inverse[same], minlength=m)
    neg = np.bincount(inverse[~same], minlength=m)
    correct = np.concatenate(([0], np.cumsum(neg))) + (pos.sum() - np.concatenate(([0], np.cumsum(pos))))
    k = m - int(np.argmax(correct[::-1]))  # argmax on the reversed counts = the highest best interval
    if 0 < k < m:
        lo, hi = values[k - 1], values[k]
        mid = lo / 2 + hi / 2  # halves first: lo + hi can overflow
        return float(mid if lo <= mid < hi else lo)  # rounding can push the midpoint of adjacent floats off
    # Outside the training scores the data say nothing about where the boundary lies; stay one training
    # score range (at least 1.0, the half-width of the cosine scale) beyond the extreme score, so test
    # scores a little past the training extremes still get the prediction the training folds chose.
    margin = max(1.0, float(values[-1] - values[0]))
    if k == 0:
        return float(min(values[0] - margin, np.nextafter(values[0], -np.inf)))
    return float(values[-1] + margin)


def _grid_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The seed's grid search without its loop: correct counts at every grid point via searchsorted.

    At threshold t the correct count is #(positives > t) + #(negatives ≤ t); ``side="right"`` counts
    exactly the elements ≤ t, the same comparisons the seed's ``score > t`` makes, so the result is
    bit-identical to the loop.
    """
    pos = np.sort(scores[same])
    neg = np.sort(scores[~same])
    correct = (len(pos) - np.searchsorted(pos, _SEED_GRID, side="right")) + np.searchsorted(
        neg, _SEED_GRID, side="right"
    )
    return float(_SEED_GRID[len(_SEED_GRID) - 1 - int(np.argmax(correct[::-1]))])


def best_threshold(scores: ArrayLike, same: ArrayLike, rule: str = "exact") -> float:
    """Threshold t maximising the accuracy of ``score > t`` (predicted "same") on these pairs.

    ``"exact"``: searches every interval between consecutive distinct scores (accuracy is constant
    within each), so no grid resolution limits it and any score scale works (e.g. negative distances).
    Ties go to the highest interval, as the seed project breaks ties towards the largest t. Returns the
    interval's midpoint; when the best is to predict everything "same" (or "different"), returns a point
    below the lowest (above the highest) score by max(1.0, max - min), so nearby unseen scores keep
    that prediction.

    ``"grid"``: the seed project's rule reproduced exactly: t over ``np.linspace(-1, 1, 10001)``,
    the largest t of maximal accuracy. Only meaningful for scores in [-1, 1] (cosine similarities);
    kept to reproduce numbers reported with the seed, so ``lrbench run`` refuses it for backbones whose
    metric is not cosine rather than stretching it over other scales (see ``engine._check_threshold_rule``).
    """
    _check_rule(rule)
    scores, same = _check_pairs(scores, same)
    return _exact_threshold(scores, same) if rule == "exact" else _grid_threshold(scores, same)


@dataclass(frozen=True)
class VerificationResult:
    """Everything a verification run reports; fold arrays are ordered by ascending fold id."""

    fold_ids: np.ndarray  # the folds reported, ascending
    fold_accuracy: np.ndarray  # accuracy of each fold with the threshold chosen on the other folds
    fold_threshold: np.ndarray
    accuracy_mean: float
    accuracy_std: float  # population std (ddof=0), as the seed project and LFW papers report
    accuracy_sem: float  # standard error of the mean: std(ddof=1) / sqrt(n_folds); 0 for a single fold
    auc: float  # pooled
    eer: float  # pooled, interpolated on the ROC segment where FPR = 1 - TPR
    tar_at_far: dict[float, float]  # pooled; highest TPR among ROC points with FPR <= far; NaN: not measurable
    roc_fpr: np.ndarray  # pooled ROC, sklearn roc_curve(drop_intermediate=True), for plotting
    roc_tpr: np.ndarray
    threshold_rule: str


def _check_folds(folds: ArrayLike, n: int, at_least: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Return the fold array and its distinct ids; choosing thresholds on held-out data needs two folds."""
    folds = np.asarray(folds)
    if folds.ndim != 1 or len(folds) != n:
        raise ValueError(f"folds must be 1-D with one entry per pair ({n}), got shape {folds.shape}")
    if not np.issubdtype(folds.dtype, np.integer):
        raise ValueError(f"folds must be integer fold ids, got dtype {folds.dtype}")
    fold_ids = np.unique(folds)
    if len(fold_ids) < at_least:
        raise ValueError(f"need at least 2 folds to choose thresholds on held-out data, got {len(fold_ids)}")
    return folds, fold_ids


def _equal_error_rate(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Where FPR = FNR on the ROC: the first point with FPR - FNR ≥ 0, interpolated from the previous one.

    sklearn's curve starts at (0, 0) and ends at (1, 1), so FPR - FNR rises from -1 to +1; along a
    straight ROC segment both rates are linear in one parameter, so the crossing is exact on that curve.
    """
    diff = fpr - (1.0 - tpr)
    i = int(np.argmax(diff >= 0))
    if diff[i] == 0:
        return float(fpr[i])
    alpha = -diff[i - 1] / (diff[i] - diff[i - 1])
    return float(fpr[i - 1] + alpha * (fpr[i] - fpr[i - 1]))


def evaluate_verification(
    scores: ArrayLike,
    same: ArrayLike,
    folds: ArrayLike,
    rule: str = "exact",
    fars: Iterable[float] = (1e-3, 1e-2),
    report_folds: Iterable[int] | None = None,
    thresholds: Mapping[int, float] | None = None,
) -> VerificationResult:
    """k-fold verification accuracy (threshold from the other folds) plus pooled AUC, EER and TAR@FAR.

    ``report_folds`` restricts the report to some fold ids (e.g. LFW's protocol for methods trained on
    folds 2–10: test on fold 1, threshold from the others): accuracies, spread and the pooled metrics then
    cover only those folds' pairs, while thresholds still come from all the other folds.

    TAR@FAR is read from the full ROC (``drop_intermediate=False``): the plotting curve drops collinear
    points, which could lower the best TPR reachable under a FAR bound. A FAR below one impostor pair
    (FAR × impostor pairs < 1: 0.1 % of one LFW fold's 300) cannot be measured: its TAR is NaN.

    ``thresholds`` gives each fold's threshold instead of choosing it here: a merged cross-validated run,
    where fold k's threshold was chosen by fold k's own model on pairs the run does not hold (one fold is then
    enough).
    """
    _check_rule(rule)
    scores, same = _check_pairs(scores, same)
    folds, fold_ids = _check_folds(folds, len(scores), at_least=2 if thresholds is None else 1)
    if thresholds is not None and not set(fold_ids.tolist()) <= set(thresholds):
        raise ValueError(f"thresholds are given for folds {sorted(thresholds)}, not for every fold {fold_ids.tolist()}")
    if report_folds is not None:
        wanted = np.unique(np.asarray(list(report_folds)))
        unknown = np.setdiff1d(wanted, fold_ids)
        if len(unknown) or not len(wanted):
            raise ValueError(f"report folds {unknown.tolist() or '[]'} are not among the folds {fold_ids.tolist()}")
        fold_ids = wanted
    fars = tuple(float(far) for far in fars)
    if any(not 0.0 <= far <= 1.0 for far in fars):
        raise ValueError(f"FAR values must lie in [0, 1], got {fars}")
    if same.all() or not same.any():
        raise ValueError("pooled pairs must include both same and different pairs for AUC/EER/TAR")

    choose = _exact_threshold if rule == "exact" else _grid_threshold
    fold_accuracy = np.empty(len(fold_ids))
    fold_threshold = np.empty(len(fold_ids))
    for i, fold in enumerate(fold_ids):
        test = folds == fold
        threshold = choose(scores[~test], same[~test]) if thresholds is None else thresholds[int(fold)]
        fold_threshold[i] = threshold
        fold_accuracy[i] = np.mean((scores[test] > threshold) == same[test])

    reported = np.isin(folds, fold_ids)
    scores, same = scores[reported], same[reported]
    if same.all() or not same.any():
        raise ValueError("the reported folds must include both same and different pairs")
    fpr_full, tpr_full, _ = roc_curve(same, scores, drop_intermediate=False)
    roc_fpr, roc_tpr, _ = roc_curve(same, scores, drop_intermediate=True)
    return VerificationResult(
        fold_ids=fold_ids,
        fold_accuracy=fold_accuracy,
        fold_threshold=fold_threshold,
        accuracy_mean=float(fold_accuracy.mean()),
        accuracy_std=float(fold_accuracy.std(ddof=0)),
        accuracy_sem=float(fold_accuracy.std(ddof=1) / np.sqrt(len(fold_accuracy))) if len(fold_accuracy) > 1 else 0.0,
        auc=float(roc_auc_score(same, scores)),
        eer=_equal_error_rate(fpr_full, tpr_full),
        tar_at_far={far: float(tpr_full[fpr_full <= far].max()) if measurable_far(far, int((~same).sum()))
                    else float("nan") for far in fars},
        roc_fpr=roc_fpr,
        roc_tpr=roc_tpr,
        threshold_rule=rule,
    )


def naive_seed_fold_accuracies(scores: ArrayLike, same: ArrayLike, folds: ArrayLike) -> np.ndarray:
    """The seed project's fold accuracies, computed as naively as the seed did: a reference, not an API.

    Kept so tests and the benchmark compare the vectorised rules against the original algorithm: for each
    fold, loop over the 10001 grid thresholds on the other folds, keep the largest t of maximal accuracy
    (``>=`` while ascending), then score the held-out fold with ``score > t``.
    """
    scores, same = _check_pairs(scores, same)
    folds, fold_ids = _check_folds(folds, len(scores))
    accuracies = np.empty(len(fold_ids))
    for i, fold in enumerate(fold_ids):
        test = folds == fold
        train_scores, train_same = scores[~test], same[~test]
        best_accuracy, best_t = -1.0, 0.0
        for t in _SEED_GRID:
            accuracy = np.mean((train_scores > t) == train_same)
            if accuracy >= best_accuracy:
                best_accuracy, best_t = accuracy, t
        accuracies[i] = np.mean((scores[test] > best_t) == same[test])
    return accuracies
