import math

import numpy as np
import pytest

from lrbench.report.metrics import evaluate_verification
from lrbench.report.stats import (
    IdentityBootstrap,
    PairScores,
    binomial_cdf_half,
    fold_decisions,
    holm,
    identity_of,
    mcnemar_exact,
    percentile_interval,
    resampled,
    result_intervals,
)


def test_binomial_tail_is_exact():
    assert binomial_cdf_half(7, 1) == 8 / 128  # C(7,0) + C(7,1) over 2**7
    assert binomial_cdf_half(10, 3) == (1 + 10 + 45 + 120) / 1024
    assert binomial_cdf_half(5, -1) == 0.0 and binomial_cdf_half(5, 5) == 1.0
    assert binomial_cdf_half(2001, 1000) == 0.5  # symmetric around n/2, exactly, even for huge 2**n
    expected = sum(math.comb(60, j) for j in range(21)) / 2**60
    assert binomial_cdf_half(60, 20) == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize(
    ("only_a", "only_b", "p"),
    [
        (1, 6, 0.125),  # 2 · (1 + 7) / 2**7
        (6, 1, 0.125),  # two-sided: symmetric
        (0, 5, 0.0625),  # 2 / 2**5
        (0, 0, 1.0),  # no discordant pair: no evidence either way
        (3, 3, 1.0),  # 2 · 42/64 > 1, capped
        (2, 8, 2 * 56 / 1024),  # 2 · (1 + 10 + 45) / 2**10
    ],
)
def test_mcnemar_exact_p_values(only_a, only_b, p):
    assert mcnemar_exact(only_a, only_b) == pytest.approx(p, rel=1e-12)


def test_holm_adjusts_step_down_and_keeps_order():
    # sorted 0.01, 0.03, 0.04 → 3·0.01, 2·0.03, max(1·0.04, 0.06)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_a_run_written_before_scores_held_people_takes_the_images_folder():
    assert identity_of("Aaron_Peirsol/Aaron_Peirsol_0001.jpg") == "Aaron_Peirsol"
    assert identity_of("set\\Bob\\b.png") == "Bob"
    assert identity_of("loose.jpg") == "loose.jpg"


def test_fold_decisions_use_each_pairs_fold_threshold():
    decided = fold_decisions([0.5, 0.5, 0.5, 0.9], [1, 2, 3, 3], [1, 3], [0.4, 0.6])
    assert decided.tolist() == [True, False, False, True]  # fold 2 is not reported: no decision


def test_unit_weights_reproduce_the_runs_pooled_metrics():
    rng = np.random.default_rng(0)
    same = rng.random(3000) < 0.5
    scores = np.round(rng.normal(same * 1.2, 1.0), 1)  # many ties
    result = evaluate_verification(scores, same, np.arange(3000) % 10)
    metrics = PairScores(scores, same, same).metrics(np.ones(3000), (1e-3, 1e-2))
    assert metrics["auc"][0] == pytest.approx(result.auc, abs=1e-12)
    assert metrics["tar_at_far_0.001"][0] == result.tar_at_far[0.001]
    assert metrics["tar_at_far_0.01"][0] == result.tar_at_far[0.01]


def test_pairs_are_weighted_by_the_draws_of_their_people():
    people_a, people_b = ["a", "b", "a", "c"], ["a", "b", "b", "c"]
    bootstrap = IdentityBootstrap(people_a, people_b, resamples=500, seed=1)
    weights = np.concatenate(list(bootstrap.weights()), axis=1).T  # resamples × pairs
    assert weights.shape == (500, 4)
    # an impostor pair (a, b) appears once per combination of the draws of a and of b
    assert (weights[:, 2] == weights[:, 0] * weights[:, 1]).all()
    assert weights[:, 0].sum() + weights[:, 1].sum() + weights[:, 3].sum() == 500 * 3  # 3 people drawn 3 times
    again = np.concatenate(list(IdentityBootstrap(people_a, people_b, resamples=500, seed=1).weights()), axis=1).T
    assert (weights == again).all()  # seeded: the same resamples every time


def _clustered_pairs(seed: int, people: int = 60, per_kind: int = 120, gain: float = 0.4):
    """Pairs whose correctness is shared through their people: a 'hard' person (30%) drops the chance that
    model A gets a pair with them right from 0.95 to 0.5; model B also fixes each of A's errors with
    probability ``gain``. True Δaccuracy = gain × (1 − E[accuracy of A])."""
    rng = np.random.default_rng(seed)
    hard = rng.random(people) < 0.3
    first = np.concatenate([rng.integers(0, people, per_kind), rng.integers(0, people, per_kind)])
    second = np.concatenate([first[:per_kind], (first[per_kind:] + rng.integers(1, people, per_kind)) % people])
    same = np.arange(2 * per_kind) < per_kind
    correct_a = rng.random(2 * per_kind) < np.where(hard[first] | hard[second], 0.5, 0.95)
    correct_b = correct_a | (rng.random(2 * per_kind) < gain)
    return [f"p{i}" for i in first], [f"p{i}" for i in second], same, correct_a, correct_b


# genuine pairs: P(hard) = 0.3; impostor pairs: P(either hard) = 1 − 0.7² = 0.51
_TRUE_DELTA = 0.4 * (1 - ((0.3 * 0.5 + 0.7 * 0.95) + (0.51 * 0.5 + 0.49 * 0.95)) / 2)


def _delta_interval(people_a, people_b, same, correct_a, correct_b, seed):
    zeros = np.zeros(len(same))
    bootstrap = IdentityBootstrap(people_a, people_b, resamples=400, seed=seed)
    a, b = resampled(bootstrap, [PairScores(zeros, same, correct_a), PairScores(zeros, same, correct_b)], ())
    return percentile_interval(b["accuracy"] - a["accuracy"])


def test_identity_bootstrap_covers_a_known_difference():
    hits, widths, estimates = 0, [], []
    for seed in range(100):
        data = _clustered_pairs(seed)
        low, high = _delta_interval(*data, seed=seed)
        hits += low <= _TRUE_DELTA <= high
        widths.append(high - low)
        estimates.append(data[4].mean() - data[3].mean())
    assert 90 <= hits <= 100
    # not covering by being uselessly wide: about the width the spread over data sets calls for
    # (the pigeonhole scheme errs slightly wide: it counts impostor pairs' own noise more than once)
    assert 0.9 < np.mean(widths) / (2 * 1.96 * np.std(estimates)) < 1.5


def test_resampling_people_not_pairs_widens_the_interval_when_pairs_share_people():
    # 10 people, 10 genuine pairs each; a person's pairs are all right or all wrong
    people = np.repeat(np.arange(10), 10)
    correct = np.isin(people, [0, 3, 7])
    same = np.ones(100, dtype=bool)
    model = PairScores(np.zeros(100), same, correct)
    by_person = [f"p{i}" for i in people]
    by_pair = [f"pair{i}" for i in range(100)]  # every pair its own cluster: a pair bootstrap

    def width(people):
        (samples,) = resampled(IdentityBootstrap(people, people, resamples=1000, seed=0), [model], ())
        low, high = percentile_interval(samples["accuracy"])
        return high - low

    assert width(by_person) > 2.5 * width(by_pair)  # ≈ √10: ten independent units, not a hundred
    unknown = [None] * 100  # a .bin: nobody is named, each pair is its own unit
    assert width(unknown) == width(by_pair)


def test_a_pair_of_unknown_people_is_resampled_as_a_whole():
    weights = np.concatenate(list(IdentityBootstrap(["a", None, ""], ["b", "c", None], resamples=300).weights()),
                             axis=1).T
    assert set(np.unique(weights[:, 1])) <= set(range(4)) and (weights[:, 1] != weights[:, 2]).any()
    assert not (weights[:, 1] == weights[:, 0]).all()


def test_result_intervals_give_tar_only_with_enough_impostors_beyond_the_far():
    rng = np.random.default_rng(2)
    same = np.arange(400) < 200
    scores = rng.normal(same * 2.0, 1.0)
    folds = np.arange(400) % 2
    images = [f"p{i % 50}/{i}.jpg" for i in range(400)]
    result = evaluate_verification(scores, same, folds, fars=(0.01, 0.05))
    columns = result_intervals(scores, same, folds, images, images[::-1], result.fold_ids,
                               result.fold_threshold, result.tar_at_far)
    assert columns["accuracy_ci_low"] <= result.accuracy_mean <= columns["accuracy_ci_high"]
    assert columns["auc_ci_low"] <= result.auc <= columns["auc_ci_high"]
    assert np.isnan(columns["tar_at_far_0.01_ci_low"]) and np.isnan(columns["tar_at_far_0.01_ci_high"])  # 2 < 10
    assert columns["tar_at_far_0.05_ci_low"] <= result.tar_at_far[0.05] <= columns["tar_at_far_0.05_ci_high"]  # 10
