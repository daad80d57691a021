"""Uncertainty for verification results: McNemar's exact test and an identity-resampling bootstrap.

Pairs of a verification protocol are not independent: LFW's 6000 pairs come from 5749 people, and one
person's photos appear in many pairs, so a model that fails on a person fails on all of that person's
pairs together. Resampling *pairs* treats those failures as independent and gives intervals that are
too narrow. Here the resampled unit is the **identity** (a person), as in a cluster bootstrap.

Identity of an image: what the protocol says (a pairs file's names, a name-label file's identity rule),
written into scores.csv as ``person_a``/``person_b``. Where the protocol knows no people (an insightface
``.bin``: anonymous pairs) the cells are empty and each pair is its own unit, a plain pair bootstrap. Runs
written before scores.csv held people are read with the rule they were computed with: the name of the
folder holding an image (``identity_of``).

Cluster scheme (Owen's "pigeonhole" bootstrap for crossed data): one resample draws n identities with
replacement from the n identities of the pairs; identity i is drawn m_i times. The resampled set holds a
copy of a pair for every combination of drawn copies of its people: a genuine pair of person a has weight
m_a, an impostor pair of people a and b has weight m_a·m_b. Both have expected weight ≈ 1, a pair whose
people were not drawn drops out, and a person's pairs always move together. (Clustering impostor pairs on
their first image's person only would keep the second person's pairs independent, which they are not.)
Every metric is then computed on the weighted pairs; intervals are percentile intervals of the resampled
statistic. Decisions use the run's own per-fold thresholds, which stay fixed (the thresholds are not
re-chosen in each resample).

Everything is plain numpy, seeded, and vectorised over resamples in fixed-size chunks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
from numpy.typing import ArrayLike

RESAMPLES = 2000
SEED = 0
CONFIDENCE = 0.95
# Resamples generated at once: bounds memory (chunk × pairs floats) and is part of what a seed reproduces.
_CHUNK = 200
# A TAR@FAR interval is given for a run only when at least this many impostor pairs may score above the
# threshold (far × impostors): below that the ROC's tail is a handful of pairs and a percentile bootstrap
# of it is not trustworthy (LFW's TAR@FAR=1e-3 rests on 3 of its 3000 impostor pairs).
MIN_IMPOSTORS_AT_FAR = 10


def measurable_far(far: float, impostors: int) -> bool:
    """Whether a false accept rate exists on ``impostors`` impostor pairs: it must allow at least one of them."""
    return far * impostors >= 1


def binomial_cdf_half(n: int, k: int) -> float:
    """P(X ≤ k) for X ~ Binomial(n, 1/2), exactly: the sum of C(n, j) for j ≤ k over 2**n, in integers."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    term, total = 1, 1
    for j in range(k):
        term = term * (n - j) // (j + 1)  # C(n, j+1) from C(n, j), exact
        total += term
    return total / 2**n  # int / int is correctly rounded even for huge n


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: pairs only A gets right (b) against pairs only B gets right (c).

    Under "both equally accurate" each discordant pair is equally likely to favour A or B, so
    min(b, c) ~ Binomial(b + c, 1/2); p = min(1, 2·P(X ≤ min(b, c))), and 1 when there is no discordant pair.
    """
    if only_a < 0 or only_b < 0:
        raise ValueError(f"counts must be non-negative, got {only_a} and {only_b}")
    n = only_a + only_b
    if n == 0:
        return 1.0
    return min(1.0, 2 * binomial_cdf_half(n, min(only_a, only_b)))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment: the i-th smallest p times (m − i + 1), made monotone, capped at 1."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (len(p) - np.arange(len(p)))
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted


def identity_of(image: str) -> str:
    """The person of an image in a run written before scores.csv held people: its folder's name."""
    path = PurePosixPath(image.replace("\\", "/"))
    return path.parent.name or image


def resampling_units(people_a: Sequence[str | None], people_b: Sequence[str | None]) -> tuple[list[str], list[str]]:
    """The people of each pair, with a pair of unknown people (None or "") made its own unit: resampled as a
    whole, like a genuine pair of one person."""
    units_a, units_b = [], []
    for index, (a, b) in enumerate(zip(people_a, people_b)):
        known = bool(a) and bool(b)
        units_a.append(f"person:{a}" if known else f"pair:{index}")
        units_b.append(f"person:{b}" if known else f"pair:{index}")
    return units_a, units_b


class IdentityBootstrap:
    """Resampling weights for a fixed list of pairs; the same seed gives the same resamples every time,
    so every DF (and every run in a comparison) is measured on the same resampled people."""

    def __init__(
        self, people_a: Sequence[str | None], people_b: Sequence[str | None], resamples: int = RESAMPLES,
        seed: int = SEED,
    ):
        if resamples < 1:
            raise ValueError(f"resamples must be at least 1, got {resamples}")
        units_a, units_b = resampling_units(people_a, people_b)
        _, codes = np.unique(np.asarray([*units_a, *units_b], dtype=object), return_inverse=True)
        self.first, self.second = codes[: len(units_a)], codes[len(units_a) :]
        self.identities = int(codes.max()) + 1 if len(codes) else 0
        self.resamples, self.seed = resamples, seed

    def weights(self) -> Iterator[np.ndarray]:
        """Chunks of (pairs × resamples in the chunk) weights, in order. Pairs are rows, so that sorting pairs
        and accumulating along them moves whole contiguous rows."""
        rng = np.random.default_rng(self.seed)
        n = self.identities
        genuine = (self.first == self.second)[:, None]
        for start in range(0, self.resamples, _CHUNK):
            k = min(_CHUNK, self.resamples - start)
            draws = rng.integers(0, n, size=(k, n)) + n * np.arange(k)[:, None]
            # float32 holds these integer weights and their sums exactly (below 2**24) at half the memory traffic
            counts = np.bincount(draws.ravel(), minlength=k * n).reshape(k, n).T.astype(np.float32)
            first, second = counts[self.first], counts[self.second]
            yield np.where(genuine, first, first * second)


@dataclass
class PairScores:
    """One model's scores and fixed decisions on the pairs, sorted once for weighted ROC statistics."""

    scores: np.ndarray
    same: np.ndarray  # bool
    correct: np.ndarray  # bool: the run's decision (score > its fold's threshold) equals ``same``

    def __post_init__(self):
        self.order = np.argsort(-self.scores, kind="stable")  # descending: the ROC's walk
        ordered = self.scores[self.order]
        self._ends = np.flatnonzero(np.append(ordered[1:] != ordered[:-1], True))  # last index of each tie group
        self._positive = self.same[self.order].astype(np.float64)

    def metrics(self, weights: np.ndarray, fars: Iterable[float]) -> dict[str, np.ndarray]:
        """Accuracy, AUC and TAR@FAR on weighted pairs, one value per column of ``weights`` (pairs × resamples;
        NaN where a resample lacks genuine or impostor pairs). With unit weights these are exactly the run's
        pooled metrics."""
        weights = weights.reshape(len(self.scores), -1)
        with np.errstate(invalid="ignore", divide="ignore"):
            accuracy = self.correct.astype(weights.dtype) @ weights / weights.sum(axis=0)
            ordered = weights[self.order]
            positive = ordered * self._positive[:, None].astype(weights.dtype)
            ordered -= positive  # now the impostor weights
            tp = np.cumsum(positive, axis=0)[self._ends]  # weight of genuine pairs scoring ≥ each tie group
            fp = np.cumsum(ordered, axis=0)[self._ends]
            total_p, total_n = tp[-1].astype(np.float64), fp[-1].astype(np.float64)
            # AUC with ties counted half: each group's genuine weight × (impostor weight below + half its own),
            # i.e. Σ group_p · (N − (fp + fp_before) / 2)
            group_p = np.diff(tp, axis=0, prepend=0)
            fp_before = np.vstack([np.zeros((1, fp.shape[1]), fp.dtype), fp[:-1]])
            below = np.einsum("gk,gk->k", group_p, fp + fp_before, dtype=np.float64)
            auc = (total_p * total_n - 0.5 * below) / (total_p * total_n)
            out = {"accuracy": accuracy, "auc": auc}
            for far in fars:
                # the best TPR among ROC points with FPR ≤ far; both rise along the walk, so it is the TPR at the
                # last such point, or 0 (the ROC's (0, 0)) when there is none
                last = (fp <= far * total_n).sum(axis=0) - 1
                tar = np.where(last >= 0, tp[np.maximum(last, 0), np.arange(tp.shape[1])], 0.0) / total_p
                out[f"tar_at_far_{far:g}"] = np.where(total_n > 0, tar, np.nan)
        return out


def percentile_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The central ``confidence`` percentile interval of the finite resampled values (NaN if none are)."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return float("nan"), float("nan")
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def resampled(
    bootstrap: IdentityBootstrap, models: Sequence[PairScores], fars: Iterable[float]
) -> list[dict[str, np.ndarray]]:
    """Every model's metrics on every resample (the same resamples for all models: paired)."""
    fars = tuple(fars)
    chunks = [[model.metrics(weights, fars) for model in models] for weights in bootstrap.weights()]
    return [
        {name: np.concatenate([chunk[i][name] for chunk in chunks]) for name in chunks[0][i]}
        for i in range(len(models))
    ]


def run_intervals(
    bootstrap: IdentityBootstrap, model: PairScores, fars: Iterable[float]
) -> dict[str, float]:
    """Interval columns for one results row: accuracy and AUC always, TAR@FAR where enough impostor pairs
    lie beyond the FAR (``MIN_IMPOSTORS_AT_FAR``); a missing interval is NaN (an empty cell)."""
    fars = tuple(fars)
    impostors = int((~model.same).sum())
    (values,) = resampled(bootstrap, [model], fars)
    columns = {}
    for name, samples in values.items():
        far = next((far for far in fars if name == f"tar_at_far_{far:g}"), None)
        usable = far is None or far * impostors >= MIN_IMPOSTORS_AT_FAR
        low, high = percentile_interval(samples) if usable else (float("nan"), float("nan"))
        columns[f"{name}_ci_low"], columns[f"{name}_ci_high"] = low, high
    return columns


def describe(resamples: int = RESAMPLES, seed: int = SEED, run: bool = True) -> str:
    """The interval method in words, for a run manifest's definitions (``run``) and a comparison's JSON."""
    text = (
        f"{100 * CONFIDENCE:g}% percentile intervals from {resamples} identity-bootstrap resamples (seed {seed}): "
        "people (as the protocol names them: scores.csv's person_a/person_b) are drawn with replacement; a "
        "genuine pair counts once per draw of its person, an impostor pair once per combination of draws of its "
        "two people (a pair of unknown people, as in a .bin, is its own unit); decisions keep the "
        "run's per-fold thresholds; accuracy is pooled over the reported pairs"
    )
    if run:
        text += f"; a TAR@FAR interval is given only when FAR × impostor pairs ≥ {MIN_IMPOSTORS_AT_FAR}"
    return text


def fold_decisions(scores: ArrayLike, folds: ArrayLike, fold_ids: ArrayLike, thresholds: ArrayLike) -> np.ndarray:
    """Each pair's prediction ("same" iff score > its fold's threshold); False for pairs outside ``fold_ids``.

    The decisions behind the fold accuracies, needed per pair by paired tests and bootstrap intervals.
    """
    scores, folds = np.asarray(scores, dtype=np.float64), np.asarray(folds)
    fold_ids, thresholds = np.asarray(fold_ids), np.asarray(thresholds, dtype=np.float64)
    position = np.searchsorted(fold_ids, folds)
    known = (position < len(fold_ids)) & (fold_ids[np.minimum(position, len(fold_ids) - 1)] == folds)
    return known & (scores > thresholds[np.minimum(position, len(fold_ids) - 1)])


def result_intervals(
    scores: np.ndarray,
    same: np.ndarray,
    folds: np.ndarray,
    people_a: Sequence[str | None],
    people_b: Sequence[str | None],
    fold_ids: np.ndarray,
    thresholds: np.ndarray,
    fars: Iterable[float],
) -> dict[str, float]:
    """A results row's interval columns from its pairs (all of them, or of every fold) and fold thresholds."""
    reported = np.isin(folds, fold_ids)
    correct = fold_decisions(scores, folds, fold_ids, thresholds) == same
    chosen = np.flatnonzero(reported)
    bootstrap = IdentityBootstrap([people_a[i] for i in chosen], [people_b[i] for i in chosen])
    return run_intervals(bootstrap, PairScores(scores[chosen], same[chosen], correct[chosen]), fars)
