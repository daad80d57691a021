"""Added cost of the run intervals per DF on LFW View 2 (6000 pairs, real identities, synthetic scores),
and of `lrbench compare` for two such runs, as ratios to the metrics a run already computes.

    python benchmarks/bench_intervals.py [PAIRS_FILE]   # default: ../shared/data/lfw/pairs.txt beside the checkout
"""

import sys
import time
from pathlib import Path

import numpy as np

from lrbench.data.pairs import parse_lfw_pairs
from lrbench.report.metrics import evaluate_verification
from lrbench.report.stats import IdentityBootstrap, PairScores, fold_decisions, resampled, result_intervals

DEFAULT_PAIRS = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw" / "pairs.txt"
records = parse_lfw_pairs(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_PAIRS)
images_a = [f"{r.names[0]}/{r.names[0]}_{r.numbers[0]:04d}.jpg" for r in records]
images_b = [f"{r.names[1]}/{r.names[1]}_{r.numbers[1]:04d}.jpg" for r in records]
same = np.array([r.same for r in records])
folds = np.array([r.fold for r in records])
rng = np.random.default_rng(0)
scores = np.where(same, rng.normal(0.5, 0.15, same.size), rng.normal(0.1, 0.15, same.size))


def best_of(fn, repeats=3):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return min(times), out


metrics_s, result = best_of(lambda: evaluate_verification(scores, same, folds))
intervals_s, columns = best_of(lambda: result_intervals(scores, same, folds, images_a, images_b, result.fold_ids,
                                                        result.fold_threshold, result.tar_at_far))
print(f"{len(same)} pairs, {len(set(r.names[0] for r in records) | set(r.names[1] for r in records))} people")
print(f"metrics per DF: {metrics_s:.3f} s; intervals per DF: {intervals_s:.3f} s "
      f"(ratio {intervals_s / metrics_s:.1f}); 13 DFs add {13 * intervals_s:.1f} s")
print({k: round(v, 4) for k, v in columns.items()})
other = scores + rng.normal(0, 0.05, same.size)
models = [PairScores(s, same, fold_decisions(s, folds, result.fold_ids, result.fold_threshold) == same)
          for s in (scores, other)]
compare_s, _ = best_of(lambda: resampled(IdentityBootstrap(images_a, images_b), models, (1e-3, 1e-2)), 1)
print(f"compare, bootstrap of two runs at one DF: {compare_s:.3f} s")
