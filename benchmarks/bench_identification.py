"""lrbench's identification search against one pass of the bare chunk products and against faiss.

    python benchmarks/bench_identification.py [--gallery 200000 1000000] [--probes 4000] [--rounds 3]
                                              [--dim 512] [--device cpu]
    python benchmarks/bench_identification.py --end-to-end 200000

On the same random unit features (every probe with a mate; see ``inputs``), for each gallery size:

- reference: one pass of the chunk products alone (``torch`` matrix products of the same probe × gallery
  chunks lrbench uses, results thrown away): the physical limit of an exact search in that backend;
- lrbench: ``lrbench.eval.identification.search``, the whole computation (ranks for CMC and rank-k, top-5,
  open-set best scores);
- faiss: ``IndexFlatIP`` top-5 of every probe (when faiss-cpu is installed: ``pip install faiss-cpu``), which
  gives no ranks.

This machine's timings vary from run to run, so each ratio comes from rounds bracketed by the reference
(reference, candidate, reference: the candidate against the mean of the two), and the median round is
reported. Peak memory is the growth of the process's peak resident set (Linux VmHWM, reset before each
candidate) over its resident set before it: the search's own memory, beyond its inputs. Exits 1 if lrbench's
top-5 scores differ from faiss's by more than float32 rounding.

``--end-to-end N`` instead runs ``lrbench run`` on a large gallery: synthetic people in a TinyFace-style
layout (first image enrolled, the others probes) with N distractors generated at the feature level
(``generated_distractors``), a small untrained SphereFace, DF 1 and 8, then again at DF 4 and 12 to show the
gallery's features read from the cache; it prints each run's progress lines, the timings from its manifest,
rank-1 per DF and the peak resident memory of the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

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
    from lrbench.eval.identification import search

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


def bracketed(reference, candidate, rounds: int) -> tuple[list[float], object, str]:
    """Per round the reference's mean time (before and after) over the candidate's; its last result; its
    peak memory growth in the rounds after the first, and in the first (which includes the libraries' own
    first allocations)."""
    ratios, peaks, result = [], [], None
    for _ in range(rounds):
        before, _, _ = measured(reference)
        seconds, result, grown = measured(candidate)
        after, _, _ = measured(reference)
        ratios.append((before + after) / 2 / seconds)
        peaks.append(grown)
    later = f"+{max(peaks[1:]):,.0f} MiB, first round " if len(peaks) > 1 else ""
    return ratios, result, f"{later}+{peaks[0]:,.0f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--probes", type=int, default=4000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--probe-chunk", type=int, default=None, help="default: lrbench's for the device")
    parser.add_argument("--gallery-chunk", type=int, default=None, help="default: lrbench's for the device")
    parser.add_argument("--end-to-end", type=int, metavar="N", help="lrbench run with N generated distractors")
    args = parser.parse_args()
    if args.end_to_end is not None:
        return end_to_end(args.end_to_end, args.device)
    from lrbench.eval.identification import CHUNKS

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
            f"of it (rounds {', '.join(f'{r:.2f}' for r in ratios)}), peak {peak}")
    worst = 0.0
    if faiss is not None:
        faiss_ratios, faiss_top, faiss_peak = bracketed(reference, partial(faiss_search, p, g), rounds)
        worst = float(np.abs(top - faiss_top).max())
        line += (f"; faiss IndexFlatIP top-5 at {statistics.median(faiss_ratios):.2f} (rounds "
                 f"{', '.join(f'{r:.2f}' for r in faiss_ratios)}), peak {faiss_peak}; lrbench / faiss "
                 f"{statistics.median(ratios) / statistics.median(faiss_ratios):.2f}; top-5 scores agree to "
                 f"{worst:.1e}")
    print(line, flush=True)
    return worst


def synthetic_layout(folder: Path, generated: int) -> Path:
    """Synthetic people as a TinyFace-style layout under ``folder`` and its protocol file (returned)."""
    from lrbench.data.synth import synthesize

    paths = synthesize(folder / "synth", seed=1, folds=2, pairs_per_fold=4, people_per_fold=20, images_per_person=4,
                       train_identities=1, train_images_per_identity=1)
    marks = dict(line.split("\t", 1) for line in paths.lfw_landmarks.read_text().splitlines())
    root, lines = folder / "layout", []
    for n, person in enumerate(sorted(paths.lfw_images.iterdir())):
        for k, image in enumerate(sorted(person.iterdir())):
            target = f"{'gallery' if k == 0 else 'probes'}/{n}_{k}.jpg"
            (root / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(image, root / target)
            lines.append(f"{target}\t{marks[f'{person.name}/{image.name}']}")
    (root / "landmarks.txt").write_text("\n".join(lines) + "\n")
    toml = folder / "large.toml"
    toml.write_text('kind = "identification"\nname = "synthetic-large"\ndescription = "synthetic people, generated '
                    f'distractors"\ngallery = "gallery"\nprobes = "probes"\ngenerated_distractors = {generated}\n')
    return toml


def end_to_end(generated: int, device: str) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        toml = synthetic_layout(folder, generated)
        env = {**os.environ, "LRBENCH_CACHE_DIR": str(folder / "cache")}  # a cold cache for the first run
        print(f"lrbench run: 40 synthetic people (40 enrolled, 120 probes) + {generated:,} generated distractors, "
              f"untrained SphereFace-4 (width 0.25), device {device}", flush=True)
        for dfs in ("1,8", "4,12"):
            out = folder / f"run-{dfs.replace(',', '-')}"
            command = [sys.executable, "-m", "lrbench", "run", "-b", "sphereface", "-w", "random", "--option",
                       "depth=4", "--option", "width=0.25", "--data", str(folder / "layout"), "--protocol", str(toml),
                       "--df", dfs, "--device", device, "--out", str(out), "--json"]
            started = time.perf_counter()
            done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True)
            if done.returncode:
                return done.returncode
            seconds = time.perf_counter() - started
            manifest = json.loads((out / "manifest.json").read_text())
            timings, results = manifest["timings"], json.loads(done.stdout)["results"]
            gallery = "read from the cache" if timings["gallery_features"]["cache"]["hit"] else "computed"
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            rank1 = ", ".join(f"DF {row['df']} {100 * row['rank1']:.1f} %" for row in results)
            print(f"--df {dfs}: {seconds:.1f} s wall; features {timings['features_s']:.1f} s (gallery "
                  f"{timings['gallery_features']['s']:.1f} s, {gallery}), search {timings['search_s']:.1f} s; "
                  f"gallery {manifest['data']['gallery']} + {manifest['data']['generated_distractors']:,} generated; "
                  f"rank-1 {rank1}; peak resident memory of the runs so far {peak:,.0f} MiB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
