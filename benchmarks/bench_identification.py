"""lrbench's identification search against one pass of the bare chunk products and against faiss.

    python benchmarks/bench_identification.py [--gallery 200000 1000000] [--probes 4000] [--rounds 3]
                                              [--dim 512] [--device cpu]

On the same random unit features (every probe with a mate; see ``inputs``), for each gallery size:

- reference: one pass of the chunk products alone (``torch`` matrix products of the same probe × gallery
  chunks lrbench uses, results thrown away): the physical limit of an exact search in that backend;
- lrbench: ``lrbench.identification.search``, the whole computation (ranks for CMC and rank-k, top-5,
  open-set best scores);
- faiss: ``IndexFlatIP`` top-5 of every probe (when faiss-cpu is installed: ``pip install faiss-cpu``), which
  gives no ranks.

This machine's timings vary from run to run, so each ratio comes from rounds bracketed by the reference
(reference, candidate, reference: the candidate against the mean of the two), and the median round is
reported. Peak memory is the growth of the process's peak resident set (Linux VmHWM, reset before each
candidate) over its resident set before it: the search's own memory, beyond its inputs. Exits 1 if lrbench's
top-5 scores differ from faiss's by more than float32 rounding.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial

import numpy as np
import torch


def inputs(probes: int, gallery: int, dim: int, seed: int = 0):
    """Unit gallery features, two entries per identity, and probes at a cosine to one of their mates spread
    evenly over 0 … 0.9, so that ranks range from 1 (most) to a large part of the gallery (some), as in a sweep
    from high to low resolution."""
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((gallery, dim), dtype=np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    gallery_ids = rng.integers(0, gallery // 2, gallery)
    mates = rng.integers(0, gallery, probes)
    away = rng.standard_normal((probes, dim), dtype=np.float32)
    away /= np.linalg.norm(away, axis=1, keepdims=True)
    cosine = rng.uniform(0, 0.9, (probes, 1)).astype(np.float32)
    p = cosine * g[mates] + np.sqrt(1 - cosine**2) * away
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    return p, g, gallery_ids[mates], gallery_ids


def products(p, g, device, probe_chunk, gallery_chunk):
    """The reference: every chunk product once, on unit rows, nothing kept."""
    probes = torch.from_numpy(p).to(device)
    for start in range(0, len(g), gallery_chunk):
        block = torch.from_numpy(g[start : start + gallery_chunk]).to(device)
        for first in range(0, len(p), probe_chunk):
            probes[first : first + probe_chunk] @ block.T
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def lrbench_search(p, g, probe_ids, gallery_ids, device, probe_chunk, gallery_chunk):
    from lrbench.identification import search

    found = search(torch.from_numpy(p), torch.from_numpy(g), probe_ids, gallery_ids, device=device,
                   probe_chunk=probe_chunk, gallery_chunk=gallery_chunk)
    return found.top_scores


def faiss_search(p, g, k: int = 5):
    import faiss

    index = faiss.IndexFlatIP(g.shape[1])
    index.add(g)
    return index.search(p, k)[0]


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def measured(function, *args):
    """Seconds, the result and the peak memory growth (MiB) of one call."""
    before = _rss_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # the peak (VmHWM) starts again from the current resident set
    started = time.perf_counter()
    result = function(*args)
    seconds = time.perf_counter() - started
    return seconds, result, (_rss_kib("VmHWM") - before) / 1024


def bracketed(reference, candidate, rounds: int) -> tuple[list[float], object, float]:
    """Per round the reference's mean time (before and after) over the candidate's; its last result and
    largest peak memory growth."""
    ratios, peak, result = [], 0.0, None
    for _ in range(rounds):
        before, _, _ = measured(reference)
        seconds, result, grown = measured(candidate)
        after, _, _ = measured(reference)
        ratios.append((before + after) / 2 / seconds)
        peak = max(peak, grown)
    return ratios, result, peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--probes", type=int, default=4000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--probe-chunk", type=int, default=None, help="default: lrbench's for the device")
    parser.add_argument("--gallery-chunk", type=int, default=None, help="default: lrbench's for the device")
    args = parser.parse_args()
    from lrbench.identification import CHUNKS

    device = torch.device(args.device)
    default_chunks = CHUNKS["cpu" if device.type == "cpu" else "accelerator"]
    probe_chunk, gallery_chunk = args.probe_chunk or default_chunks[0], args.gallery_chunk or default_chunks[1]
    try:
        import faiss
    except ImportError:
        faiss = None
    print(f"{args.probes} probes × gallery of N, {args.dim}-d unit features, device {device}, "
          f"{torch.get_num_threads()} torch threads, chunks {probe_chunk} × {gallery_chunk}; "
          f"faiss {faiss.__version__ if faiss else 'not installed'}; ratios: median of {args.rounds} rounds")
    worst = [one_size(size, args.probes, args.dim, args.rounds, device, probe_chunk, gallery_chunk, faiss)
             for size in args.gallery]
    return 1 if max(worst) > 1e-5 else 0


def one_size(size, probes, dim, rounds, device, probe_chunk, gallery_chunk, faiss) -> float:
    """Print one gallery size's line; returns the largest top-5 score difference to faiss (0 without it)."""
    p, g, probe_ids, gallery_ids = inputs(probes, size, dim)
    reference = partial(products, p, g, device, probe_chunk, gallery_chunk)
    measured(reference)  # warm-up: first touches of the gallery's pages, BLAS start-up
    candidate = partial(lrbench_search, p, g, probe_ids, gallery_ids, device, probe_chunk, gallery_chunk)
    ratios, top, peak = bracketed(reference, candidate, rounds)
    seconds, _, _ = measured(reference)
    line = (f"N={size:>9,}: one product pass {seconds:6.1f} s; lrbench search at {statistics.median(ratios):.2f} "
            f"of it (rounds {', '.join(f'{r:.2f}' for r in ratios)}), peak +{peak:,.0f} MiB")
    worst = 0.0
    if faiss is not None:
        faiss_ratios, faiss_top, faiss_peak = bracketed(reference, partial(faiss_search, p, g), rounds)
        worst = float(np.abs(top - faiss_top).max())
        line += (f"; faiss IndexFlatIP top-5 at {statistics.median(faiss_ratios):.2f} (rounds "
                 f"{', '.join(f'{r:.2f}' for r in faiss_ratios)}), peak +{faiss_peak:,.0f} MiB; lrbench / faiss "
                 f"{statistics.median(ratios) / statistics.median(faiss_ratios):.2f}; top-5 scores agree to "
                 f"{worst:.1e}")
    print(line, flush=True)
    return worst


if __name__ == "__main__":
    sys.exit(main())
