"""The chunked identification search against a naive full-matrix numpy search: speed and peak memory.

    python benchmarks/bench_identification.py [--probes 2000] [--gallery 50000] [--dim 512] [--device cpu]

Both find, for every probe, the true identity's rank (pessimistic ties) and the top 5 entries, on the same
random unit features. Each runs in a fresh process, so its peak resident memory (Linux VmHWM, reset after
the inputs are made) is its own. Prints probes × gallery comparisons per second and peak extra memory for
each, and the ratios chunked / naive; exits 1 if a chunked rank differs from the naive one by more than float32
rounding explains (scores within 1e-5 of the best mate's counted either way, in float64).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time

import numpy as np


def inputs(probes: int, gallery: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal((probes, dim), dtype=np.float32)
    g = rng.standard_normal((gallery, dim), dtype=np.float32)
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    gallery_ids = rng.integers(0, gallery // 2, gallery)
    probe_ids = gallery_ids[rng.integers(0, gallery, probes)]  # every probe has a mate
    return p, g, probe_ids, gallery_ids


def naive(p, g, probe_ids, gallery_ids, device):
    scores = p @ g.T  # the full probes × gallery matrix
    mate = probe_ids[:, None] == gallery_ids[None, :]
    best = np.where(mate, scores, -np.inf).max(1)
    rank = 1 + ((scores >= best[:, None]) & ~mate).sum(1)
    top = np.argpartition(-scores, 5, axis=1)[:, :5]  # the five best, then in order
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), axis=1), 1)
    return rank, top


def chunked(p, g, probe_ids, gallery_ids, device):
    import torch

    from lrbench.identification import search

    found = search(torch.from_numpy(p), torch.from_numpy(g), probe_ids, gallery_ids, device=device,
                   probe_chunk=512, gallery_chunk=8192)
    return found.rank.astype(np.int64), found.top_index


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def _measure(name: str, args, queue) -> None:
    p, g, probe_ids, gallery_ids = inputs(args.probes, args.gallery, args.dim)
    function = {"naive": naive, "chunked": chunked}[name]
    if name == "chunked":
        import torch  # noqa: F401  (imported before the peak is reset: its code is not search memory)

        import lrbench.identification  # noqa: F401
    before = _rss_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # reset VmHWM to the current RSS
    started = time.perf_counter()
    rank, top = function(p, g, probe_ids, gallery_ids, args.device)
    seconds = time.perf_counter() - started
    peak_mib = (_rss_kib("VmHWM") - before) / 1024
    bounds = _tie_bounds(p, g, probe_ids, gallery_ids) if name == "naive" else None  # after the peak is read
    queue.put((name, seconds, peak_mib, rank, bounds))


def _tie_bounds(p, g, probe_ids, gallery_ids, tolerance: float = 1e-5):
    """The ranks a search may give when scores within ``tolerance`` of the best mate's count either way."""
    scores = p.astype(np.float64) @ g.T.astype(np.float64)
    mate = probe_ids[:, None] == gallery_ids[None, :]
    best = np.where(mate, scores, -np.inf).max(1)[:, None]
    return 1 + ((scores > best + tolerance) & ~mate).sum(1), 1 + ((scores >= best - tolerance) & ~mate).sum(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=1000)
    parser.add_argument("--gallery", type=int, default=50000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    results = {}
    for name in ("naive", "chunked"):
        queue = context.Queue()
        process = context.Process(target=_measure, args=(name, args, queue))
        process.start()
        results[name] = queue.get()
        process.join()
    comparisons = args.probes * args.gallery
    for name, seconds, peak_mib, _, _ in results.values():
        print(f"{name:8s} {comparisons / seconds / 1e6:10.1f} M comparisons/s   peak +{peak_mib:8.1f} MiB")
    (_, naive_s, naive_mib, naive_rank, (low, high)), (_, chunked_s, chunked_mib, chunked_rank, _) = results.values()
    print(f"chunked / naive: speed ×{naive_s / chunked_s:.2f}, peak memory ×{chunked_mib / max(naive_mib, 1e-9):.3f} "
          f"({args.probes} probes × {args.gallery} gallery × {args.dim} dims, device {args.device})")
    differ = int(np.sum(naive_rank != chunked_rank))
    wrong = int(np.sum((chunked_rank < low) | (chunked_rank > high)))
    print(f"ranks differ for {differ} of {args.probes} probes, {wrong} beyond float32 rounding at near-ties (1e-5)")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
