"""Verification metrics: the vectorised threshold rules against brute force and the seed's naive loop."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score

from lrbench import BackboneSpec, InputSpec, SPHEREFACE_96x112, hookimpl
from lrbench.cli import cli
from lrbench.report.metrics import (
    THRESHOLD_RULES,
    best_threshold,
    evaluate_verification,
    naive_seed_fold_accuracies,
)

GRID = np.linspace(-1.0, 1.0, 10001)
FOLD_SIZE = 600


def synthetic_lfw_scores(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """6000 LFW-View-2-shaped pairs: 10 contiguous folds of 300 genuine then 300 impostor pairs."""
    rng = np.random.default_rng(seed)
    same = np.tile(np.repeat([True, False], FOLD_SIZE // 2), 10)
    scores = np.where(same, rng.normal(0.5, 0.15, same.size), rng.normal(0.1, 0.15, same.size))
    return np.clip(scores, -1.0, 1.0), same, np.repeat(np.arange(10), FOLD_SIZE)


def accuracy(scores: np.ndarray, same: np.ndarray, t: float) -> float:
    return float(np.mean((scores > t) == same))


def random_pairs(seed: int, decimals: int) -> tuple[np.ndarray, np.ndarray]:
    """Few pairs with coarse scores, so tied scores (mixed labels at one value) are common."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    return np.round(rng.uniform(-1, 1, n), decimals), rng.random(n) < rng.uniform(0.2, 0.8)


@pytest.fixture(scope="module")
def lfw_like():
    scores, same, folds = synthetic_lfw_scores()
    return scores, same, folds, naive_seed_fold_accuracies(scores, same, folds)


# --- exact rule -------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(40))
def test_exact_rule_matches_brute_force_and_takes_highest_tie(seed):
    scores, same = random_pairs(seed, decimals=1 if seed % 2 else 2)
    t = best_threshold(scores, same, rule="exact")
    # Every distinct prediction is reached by a candidate: each score itself, or below all scores.
    candidates = np.append(np.unique(scores), scores.min() - 1.0)
    accuracies = np.array([accuracy(scores, same, c) for c in candidates])
    assert accuracy(scores, same, t) == accuracies.max()
    # Highest best interval = fewest pairs predicted "same" among all best candidates.
    assert (scores > t).sum() == min((scores > c).sum() for c in candidates[accuracies == accuracies.max()])


def test_exact_rule_returns_interval_midpoint_and_breaks_ties_upwards():
    assert best_threshold([0.1, 0.2, 0.3, 0.4], [False, False, True, True]) == pytest.approx(0.25)
    # "All same" and "same iff > 0.2" both get 2 of 3 right; the higher interval (0.2, 0.3) wins.
    assert best_threshold([0.1, 0.2, 0.3], [True, False, True]) == pytest.approx(0.25)


def test_exact_rule_outside_the_scores_and_on_other_scales():
    scores = np.array([0.2, 0.5, 0.7])
    below = best_threshold(scores, [True, True, True])
    above = best_threshold(scores, [False, False, False])
    assert below == pytest.approx(0.2 - 1.0) and above == pytest.approx(0.7 + 1.0)
    # Negative distances: wide scale, margin grows with the score range; still strictly outside.
    distances = -np.array([1200.0, 300.0, 50.0])
    assert best_threshold(distances, [True, True, True]) == pytest.approx(-1200.0 - 1150.0)
    assert best_threshold(distances, [False, True, True]) == pytest.approx(-750.0)
    # Huge scores: the margin must not vanish in rounding.
    assert best_threshold([1e20, 1e20], [True, True]) < 1e20


def test_exact_rule_all_scores_equal():
    # Mixed labels at one score: majority wins; a 1:1 tie goes to the higher interval (all "different").
    assert best_threshold([0.3] * 5, [True, True, True, False, False]) < 0.3
    assert best_threshold([0.3] * 4, [True, True, False, False]) >= 0.3


def test_exact_rule_separates_adjacent_floats():
    lo = 0.5
    hi = np.nextafter(lo, 1.0)
    t = best_threshold([lo, hi], [False, True])
    assert lo <= t < hi


# --- grid rule --------------------------------------------------------------------------------------


def naive_grid_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The seed's loop, verbatim in spirit: ascending t, ``>=`` keeps the largest t of maximal accuracy."""
    best_accuracy, best_t = -1.0, 0.0
    for t in GRID:
        acc = np.mean((scores > t) == same)
        if acc >= best_accuracy:
            best_accuracy, best_t = acc, t
    return float(best_t)


@pytest.mark.parametrize("seed", range(4))
def test_grid_rule_equals_naive_loop(seed):
    rng = np.random.default_rng(100 + seed)
    scores, same = random_pairs(seed, decimals=2)
    # Some scores sit exactly on grid points, where "> t" versus ">= t" would matter.
    on_grid = GRID[rng.integers(0, len(GRID), len(scores) // 2)]
    scores = np.concatenate([scores, on_grid])
    same = np.concatenate([same, rng.random(len(on_grid)) < 0.5])
    assert best_threshold(scores, same, rule="grid") == naive_grid_threshold(scores, same)


def test_grid_rule_with_scores_off_the_grid():
    # Every grid threshold gives the same predictions, so the largest grid point wins.
    scores, same = np.array([1.5, 2.0, 3.0]), np.array([True, False, True])
    assert best_threshold(scores, same, rule="grid") == naive_grid_threshold(scores, same) == 1.0


# --- k-fold evaluation ------------------------------------------------------------------------------


def test_fold_accuracies_agree_with_seed_loop(lfw_like):
    scores, same, folds, naive = lfw_like
    grid = evaluate_verification(scores, same, folds, rule="grid")
    exact = evaluate_verification(scores, same, folds, rule="exact")
    np.testing.assert_array_equal(grid.fold_accuracy, naive)
    assert np.all(np.abs(exact.fold_accuracy - naive) <= 1 / FOLD_SIZE + 1e-12)
    assert 0.85 < exact.accuracy_mean < 0.97
    assert exact.threshold_rule == "exact" and grid.threshold_rule == "grid"
    assert exact.fold_accuracy.shape == exact.fold_threshold.shape == (10,)


def test_std_is_population_and_sem_is_sample(lfw_like):
    scores, same, folds, _ = lfw_like
    result = evaluate_verification(scores, same, folds)
    acc = result.fold_accuracy
    assert result.accuracy_mean == pytest.approx(np.mean(acc))
    assert result.accuracy_std == pytest.approx(np.std(acc, ddof=0))
    assert result.accuracy_sem == pytest.approx(np.std(acc, ddof=1) / np.sqrt(len(acc)))
    assert result.accuracy_std != pytest.approx(np.std(acc, ddof=1))


@pytest.mark.parametrize("rule", THRESHOLD_RULES)
def test_perfect_separation(rule):
    rng = np.random.default_rng(1)
    same = np.tile([True, False], 100)
    scores = np.where(same, rng.uniform(0.6, 0.9, 200), rng.uniform(-0.2, 0.4, 200))
    result = evaluate_verification(scores, same, np.repeat(np.arange(10), 20), rule=rule)
    np.testing.assert_array_equal(result.fold_accuracy, 1.0)
    assert result.auc == 1.0 and result.eer == 0.0
    assert result.tar_at_far[1e-2] == 1.0  # 1 % of 100 impostor pairs: one pair
    assert np.isnan(result.tar_at_far[1e-3]), "0.1 % of 100 impostor pairs is a tenth of a pair: not measured"


def test_random_scores_give_chance_accuracy():
    rng = np.random.default_rng(2)
    scores, same = rng.uniform(-1, 1, 6000), rng.random(6000) < 0.5
    result = evaluate_verification(scores, same, np.repeat(np.arange(10), 600))
    assert abs(result.accuracy_mean - 0.5) < 0.04
    assert abs(result.auc - 0.5) < 0.04 and abs(result.eer - 0.5) < 0.04


def test_all_scores_equal():
    same = np.tile([True, True, False], 10)
    result = evaluate_verification(np.zeros(30), same, np.repeat([0, 1], 15))
    assert result.auc == 0.5 and result.eer == pytest.approx(0.5)
    np.testing.assert_allclose(result.fold_accuracy, 2 / 3)  # majority class: predict every pair "same"


def test_tar_at_far_and_eer_by_hand():
    # Descending: 0.9 P, 0.8 P, 0.7 N, 0.6 P, 0.4 N, 0.3 P, 0.2 N, 0.1 N. ROC corners (FPR, TPR):
    # (0, .25) (0, .5) (.25, .5) (.25, .75) (.5, .75) (.5, 1) (.75, 1) (1, 1).
    scores = [0.9, 0.8, 0.6, 0.3, 0.7, 0.4, 0.2, 0.1]
    same = [True] * 4 + [False] * 4
    result = evaluate_verification(scores, same, [0, 1] * 4, fars=(0.1, 0.25, 0.3, 0.5))
    assert {far: tar for far, tar in result.tar_at_far.items() if far != 0.1} == {0.25: 0.75, 0.3: 0.75, 0.5: 1.0}
    assert np.isnan(result.tar_at_far[0.1]), "10 % of 4 impostor pairs is less than one pair: not measured"
    assert result.eer == 0.25  # (.25, .75) lies on FPR = 1 - TPR
    assert result.auc == pytest.approx(13 / 16)


def test_eer_interpolates_along_a_tied_segment():
    # 0.9 P, then a P and an N tied at 0.5, then 0.1 N: the ROC runs (0, .5) → (.5, 1) diagonally and
    # crosses FPR = 1 - TPR halfway, at FPR = .25.
    result = evaluate_verification([0.9, 0.5, 0.5, 0.1], [True, True, False, False], [0, 1, 0, 1])
    assert result.eer == pytest.approx(0.25)
    assert result.auc == pytest.approx(3.5 / 4)


def test_tar_uses_points_the_plotting_roc_drops():
    # One P and one N tied at each of 4 scores: the ROC is the diagonal, and sklearn's plotting curve
    # keeps only (0, 0), (.25, .25), (1, 1). TAR at FAR .5 is still .5, read from the full curve.
    scores = np.repeat([0.8, 0.6, 0.4, 0.2], 2)
    same = np.tile([True, False], 4)
    result = evaluate_verification(scores, same, [0, 1] * 4, fars=(0.5,))
    assert 0.5 not in result.roc_fpr
    assert result.tar_at_far == {0.5: 0.5}


# --- bad inputs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scores", "same", "folds", "kwargs", "message"),
    [
        ([0.1, 0.2], [True], [0, 1], {}, "differ in length"),
        ([0.1, 0.2], [True, False], [0, 1, 1], {}, "one entry per pair"),
        ([0.1, 0.2], [True, False], [0, 0], {}, "at least 2 folds"),
        ([0.1, np.nan, np.nan], [True, False, True], [0, 1, 1], {}, "2 of 3 scores are NaN"),
        ([0.1, np.inf], [True, False], [0, 1], {}, "1 of 2 scores are infinite"),
        ([0.1, 0.2], [1, 2], [0, 1], {}, "boolean"),
        ([0.1, 0.2], [True, False], [0.0, 1.0], {}, "integer fold ids"),
        ([[0.1, 0.2]], [True, False], [0, 1], {}, "1-D"),
        ([], [], [], {}, "empty"),
        ([0.1, 0.2], [True, True], [0, 1], {}, "both same and different"),
        ([0.1, 0.2], [True, False], [0, 1], {"rule": "median"}, "unknown threshold rule 'median'"),
        ([0.1, 0.2], [True, False], [0, 1], {"fars": (1.5,)}, "FAR values"),
    ],
)
def test_bad_inputs_raise(scores, same, folds, kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluate_verification(scores, same, folds, **kwargs)


def test_best_threshold_rejects_bad_inputs():
    with pytest.raises(ValueError, match="1 of 2 scores are NaN"):
        best_threshold([np.nan, 0.3], [True, False])
    with pytest.raises(ValueError, match="unknown threshold rule"):
        best_threshold([0.1, 0.3], [True, False], rule="loop")


def test_report_folds_cover_only_those_folds_with_thresholds_from_all_others():
    scores, same, folds = synthetic_lfw_scores(1)
    full = evaluate_verification(scores, same, folds)
    one = evaluate_verification(scores, same, folds, report_folds=[0])
    assert one.fold_ids.tolist() == [0] and full.fold_ids.tolist() == list(range(10))
    assert one.fold_accuracy[0] == full.fold_accuracy[0] and one.fold_threshold[0] == full.fold_threshold[0]
    assert one.accuracy_mean == full.fold_accuracy[0] and one.accuracy_std == 0 and one.accuracy_sem == 0
    assert one.auc == pytest.approx(roc_auc_score(same[folds == 0], scores[folds == 0]))
    with pytest.raises(ValueError, match="report folds"):
        evaluate_verification(scores, same, folds, report_folds=[10])


# --- threshold rule vs score scale ------------------------------------------------------------------


def test_the_seed_grid_cannot_place_a_threshold_among_distance_scores():
    """Why the grid is refused for Euclidean backbones: negated distances below -1 all fall under every grid
    threshold, so the grid predicts 'same' for every pair while the exact rule separates them perfectly."""
    same = np.tile([True, False], 50)
    scores = np.where(same, -3.0, -7.0) + np.linspace(0, 0.5, 100)  # negated distances of unnormalised features
    folds = np.repeat(np.arange(10), 10)
    assert evaluate_verification(scores, same, folds, rule="exact").accuracy_mean == 1.0
    assert evaluate_verification(scores, same, folds, rule="grid").accuracy_mean == 0.5


def run_args(synth_data, tmp_path, *extra):
    return ["run", "--data", str(synth_data.lfw_root), "--out", str(tmp_path / "run"), "--workers", "1", *extra]


def test_grid_rule_is_refused_for_dlib_resnets_euclidean_scores(synth_data, tmp_path):
    result = CliRunner().invoke(cli, run_args(synth_data, tmp_path, "-b", "dlib-resnet", "--weights", "random",
                                              "--threshold-rule", "grid"))
    assert result.exit_code == 2 and result.stderr.splitlines() == [
        "Error: --threshold-rule grid: the seed's thresholds -1…1 suit cosine scores only, and backbone "
        "'dlib-resnet' (plugin 'lrbench_plugins.dlib_resnet') has euclidean scores; use --threshold-rule exact"
    ]
    assert not (tmp_path / "run").exists()


def test_seed_preset_names_itself_when_its_grid_is_refused(synth_data, tmp_path):
    result = CliRunner().invoke(cli, run_args(synth_data, tmp_path, "-b", "dlib-resnet", "--weights", "random",
                                              "--preset", "seed"))
    assert result.exit_code == 2
    assert "--threshold-rule grid (--preset seed picks it unless you give --threshold-rule)" in result.stderr


class EuclideanCells:
    @hookimpl
    def register_backbones(self, register):
        net = lambda weights: torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten())  # noqa: E731
        register(BackboneSpec("cells-l2", net, InputSpec(SPHEREFACE_96x112), 48, metric="euclidean"))


def test_seed_preset_with_the_exact_rule_runs_a_euclidean_backbone(plugin_manager, synth_data, tmp_path):
    plugin_manager.register_for_test(EuclideanCells(), name="euclidean-cells")
    result = CliRunner().invoke(cli, run_args(synth_data, tmp_path, "-b", "cells-l2", "--preset", "seed",
                                              "--threshold-rule", "exact"))
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["settings"]["threshold_rule"] == "exact" and manifest["degradation"]["name"] == "seed"


def test_given_thresholds_score_each_fold_with_its_own_and_one_fold_is_enough():
    scores, same = [0.1, 0.9, 0.4, 0.6], [0, 1, 0, 1]
    assert evaluate_verification(scores, same, [1, 1, 1, 1], thresholds={1: 0.5}).accuracy_mean == 1.0
    held = evaluate_verification(scores, same, [1, 1, 2, 2], thresholds={1: 0.95, 2: 0.5})
    assert held.fold_accuracy.tolist() == [0.5, 1.0] and held.fold_threshold.tolist() == [0.95, 0.5]
    with pytest.raises(ValueError, match="not for every fold"):
        evaluate_verification(scores, same, [1, 1, 2, 2], thresholds={1: 0.5})
    with pytest.raises(ValueError, match="at least 2 folds"):
        evaluate_verification(scores, same, [1, 1, 1, 1])
