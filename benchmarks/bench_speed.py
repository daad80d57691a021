"""How close `lrbench run` comes to the bare network, and how much faster it is than a naive pipeline.

    python benchmarks/bench_speed.py                          # sphere20 (random weights), 2 folds of LFW
    python benchmarks/bench_speed.py --backbone mobilefacenet --weights random --folds 10
    python benchmarks/bench_speed.py --backbone dlib-resnet --weights DAT_FILE --folds 10
    python benchmarks/bench_speed.py --folds 2 --device cuda --batch-size 256 --precision bf16

Any registered backbone works (installed plugins too); `mobilefacenet`, a depthwise-separable network, comes
from benchmarks/plugins/. All in one process (with lrbench's malloc tuning, see lrbench/eval/allocator.py, which
is the best allocator setting measured), on the same images and network:
  (a) lrbench's time for one DF (cold: decode + align + features + metrics) against a naive per-pair
      pipeline like the seed's evaluation script (for every pair: decode and align both images, degrade,
      one forward of the four images face/mirror × 2); target ≥ 1.5×;
  (b) the network's own forward time on the unique images and their mirrors, at its best batch size of
      --bare-batches, against lrbench's feature stage (degrade, normalise, mirror, forward, fuse) in a warm run
      at lrbench's batch size; target ≥ 0.85. The whole warm run (crop cache, features, metrics) is shown too;
  (c) the network's achieved GFLOP/s against a large matrix multiply on the same device.
Data: the real LFW copy in ../shared when present, else a synthetic set; the first --folds folds of pairs.

    python benchmarks/bench_speed.py --steady-state --backbone mobilefacenet --folds 2 --per-class 40 --rounds 3

--steady-state measures instead lrbench's steady state against the bare forward at the batch lrbench chose
(`--batch-size auto` by default, remembered in the run's cache after a first, untimed run): lrbench's marginal
time of `lrbench embed` at DF 1-9 over DF 1 alone (so start-up, crop loading and DF 1 cancel: eight DFs of
degrade, normalise, mirror, forward, fuse), against the bare forward over the same 8 × N faces and their
mirror images, already normalised, in rounds each bracketed by the reference (reference, lrbench, reference);
it prints every round's ratio and the median.
"""

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from lrbench import registry
from lrbench.data.align import align_face
from lrbench.data.landmarks import landmarks_for
from lrbench.data.synth import synthesize
from lrbench.eval.allocator import tune_allocator
from lrbench.eval.distributed import resolve_device
from lrbench.eval.engine import EvalSettings, embed, evaluate, fuse, prepare, score_pairs
from lrbench.eval.models import build_backbone
from lrbench.eval.precision import PRECISIONS, autocast_for
from lrbench.options import parse_options
from lrbench.plugins import load_plugins, load_plugins_dir

SHARED_LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw"
BENCH_PLUGINS = Path(__file__).resolve().parent / "plugins"


def subset_pairs(pairs_file: Path, folds: int, per_class: int | None, out: Path) -> Path:
    """The first ``folds`` folds of a View-2-format pairs file (optionally ``per_class`` same and different
    pairs of each), as a pairs file of its own."""
    lines = pairs_file.read_text().splitlines()
    full = int(lines[0].split()[1])
    keep = min(per_class or full, full)
    body = []
    for fold in range(folds):
        start = 1 + fold * 2 * full
        body += lines[start : start + keep] + lines[start + full : start + full + keep]
    out.write_text("\n".join([f"{folds}\t{keep}", *body]) + "\n")
    return out


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def naive_run(settings: EvalSettings, spec, model, device, df: int) -> np.ndarray:
    """The seed's loop: per pair, decode and align both images, degrade, forward face and mirror of both, and
    fuse each face with its mirror as lrbench does for this backbone (concat for SphereFace, sum for dlib's)."""
    protocol = registry.protocol(settings.protocol)
    pairs = protocol.load(Path(settings.data), settings.pairs)
    landmarks = dict(zip(pairs.images, landmarks_for(pairs.images, settings.landmarks, pairs.root).points))
    degrade = registry.degradation(settings.degradation).apply
    fusion = settings.fusion or spec.flip_fusion
    autocast = autocast_for(device, settings.precision)
    scores = []
    with torch.inference_mode():
        for a, b in zip(pairs.first, pairs.second):
            crops = []
            for rel in (pairs.images[a], pairs.images[b]):
                with Image.open(pairs.root / rel) as image:
                    crops.append(align_face(image, landmarks[rel], spec.input.template))
            batch = torch.from_numpy(np.stack(crops)).to(device).permute(0, 3, 1, 2).float()
            batch = spec.input.normalise(degrade(batch, df))
            four = torch.stack([batch[0], batch[0].flip(2), batch[1], batch[1].flip(2)])
            with autocast:
                feats = model(four).float()
            fused = fuse(feats[0::2], feats[1::2], fusion)
            scores.append(score_pairs(fused[:1].cpu(), fused[1:].cpu(), spec.metric)[0])
    return np.asarray(scores)


def bare_forward(spec, model, crops: np.ndarray, settings: EvalSettings, device, batch_size: int) -> float:
    """Seconds for the network alone on every unique crop and its mirror, inputs already on the device."""
    memory = torch.channels_last if settings.channels_last else torch.contiguous_format
    batches = (torch.from_numpy(np.array(crops[i : i + batch_size])) for i in range(0, len(crops), batch_size))
    inputs = [spec.input.normalise(batch.to(device).permute(0, 3, 1, 2).float()) for batch in batches]
    inputs = [torch.cat([x, x.flip(3)]).contiguous(memory_format=memory) for x in inputs]
    model = model.to(device, memory_format=memory)
    autocast = autocast_for(device, settings.precision)
    with torch.inference_mode(), autocast:
        model(inputs[0])  # warm-up
        synchronise(device)
        started = time.perf_counter()
        for x in inputs:
            model(x)
        synchronise(device)
    return time.perf_counter() - started


def lrbench_marginal(settings: EvalSettings) -> tuple[float, dict]:
    """Seconds ``lrbench embed`` at DF 1-9 takes beyond the same at DF 1 alone (start-up, crop loading and DF 1
    cancel: what remains is eight DFs' feature passes), and the DF 1-9 run's manifest."""
    _, one_s = timed(embed, replace(settings, dfs="1"))
    arrays, sweep_s = timed(embed, replace(settings, dfs="1-9"))
    return sweep_s - one_s, json.loads(str(arrays["manifest"]))


def bracketed_rounds(reference, candidate, rounds: int) -> list[float]:
    """Per round the reference's mean seconds (run before and after) over the candidate's: other load on the
    machine slows both sides of a round alike. ``reference()`` and ``candidate()`` return seconds."""
    ratios = []
    for _ in range(rounds):
        before, seconds, after = reference(), candidate(), reference()
        ratios.append((before + after) / 2 / seconds)
        print(f"  round {len(ratios)}: reference {before:.2f} / {after:.2f} s, lrbench {seconds:.2f} s, "
              f"ratio {ratios[-1]:.3f}", flush=True)
    return ratios


def report_rounds(ratios: list[float], target: float = 0.95) -> None:
    rounds = " / ".join(f"{ratio:.2f}" for ratio in ratios)
    print(f"ratio to the bare reference by round {rounds}; median {statistics.median(ratios):.3f} "
          f"(target >= {target})")


def steady_state(settings: EvalSettings, spec, model, device, rounds: int) -> None:
    """lrbench's marginal DF 2-9 time against the bare forward at lrbench's batch on the same 8 × N faces."""
    lrbench_marginal(settings)  # fills the crop cache and measures (and remembers) the batch size
    _, manifest = lrbench_marginal(settings)
    batch = manifest["settings"]["batch_size"]
    crops = prepare(settings).extractor.crops
    print(f"{settings.backbone} on {device}: {len(crops)} images, DF 1 vs 1-9 (8 × {len(crops)} faces and their "
          f"mirror images), lrbench batch {batch} ({manifest['batching']['chosen']}; images/s by batch "
          f"{manifest['batching'].get('images_per_s')}), {torch.get_num_threads()} threads", flush=True)
    report_rounds(bracketed_rounds(
        lambda: sum(bare_forward(spec, model, crops, settings, device, batch) for _ in range(8)),
        lambda: lrbench_marginal(settings)[0], rounds))


def synchronise(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_gflops(device, precision: str, size: int = 4096) -> float:
    """A large matrix product's GFLOP/s: the device's practical peak. In fp32 on CUDA the product may use TF32
    exactly when cuDNN's convolutions may (PyTorch allows it for convolutions, not for matmuls, by default), so
    that both sides of (c) do the same arithmetic."""
    dtype = PRECISIONS[precision]
    repeats = 50 if device.type == "cuda" else 5  # a GPU does one product in under a millisecond
    a, b = torch.randn(size, size, device=device, dtype=dtype), torch.randn(size, size, device=device, dtype=dtype)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32
    try:
        a @ b
        synchronise(device)
        started = time.perf_counter()
        for _ in range(repeats):
            a @ b
        synchronise(device)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="LFW-format folder with pairs.txt and landmarks.txt")
    parser.add_argument("--folds", type=int, default=2, help="how many folds of pairs to use")
    parser.add_argument("--per-class", type=int, help="same (and different) pairs per fold (default: all)")
    parser.add_argument("--backbone", default="sphereface")
    parser.add_argument("--weights", default="random")
    parser.add_argument("--option", action="append", default=[], help="backbone option name=value")
    parser.add_argument("--df", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", default="auto", help="lrbench's --batch-size (default: auto)")
    parser.add_argument("--bare-batches", default="16,32,64,128,256",
                        help="batch sizes (faces) tried for the bare forward; its best one counts")
    parser.add_argument("--precision", default="fp32", choices=sorted(PRECISIONS))
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--repeats", type=int, default=2, help="best of N for the two sides of (b)")
    parser.add_argument("--steady-state", action="store_true",
                        help="instead: lrbench's marginal DF 2-9 time against the bare forward, in rounds")
    parser.add_argument("--rounds", type=int, default=3, help="--steady-state's rounds")
    args = parser.parse_args()
    if args.folds < 2:
        parser.error(f"--folds {args.folds}: at least 2 (each fold's threshold is chosen on the others)")

    tune_allocator()
    load_plugins()
    load_plugins_dir(BENCH_PLUGINS)
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        data = args.data or (SHARED_LFW if (SHARED_LFW / "pairs.txt").is_file() else None)
        if data is None:
            data = synthesize(scratch / "synth").lfw_root
        pairs_file = subset_pairs(Path(data) / "pairs.txt", args.folds, args.per_class, scratch / "pairs.txt")
        bare_batches = [int(size) for size in args.bare_batches.split(",")]
        lrbench_batch = int(args.batch_size) if args.batch_size.isdigit() else args.batch_size
        settings = EvalSettings(
            backbone=args.backbone, data=data, pairs=pairs_file, landmarks=Path(data) / "landmarks.txt",
            weights=args.weights, options=tuple(args.option), dfs=str(args.df), device=str(device),
            batch_size=lrbench_batch, precision=args.precision, channels_last=args.channels_last,
            cache_dir=scratch / "cache", show_progress=False,
        )
        spec = registry.backbone(args.backbone)
        model = build_backbone(spec, args.weights, parse_options(spec, args.option)).to(device)
        if args.steady_state:
            return steady_state(settings, spec, model, device, args.rounds)

        cold, cold_s = timed(evaluate, settings)
        warm, warm_s = timed(evaluate, settings)
        naive_scores, naive_s = timed(naive_run, settings, spec, model, device, args.df)
        agree = np.abs(naive_scores - warm.scores["score"].to_numpy()).max()

        crops = prepare(settings).extractor.crops
        features_s = warm.manifest["timings"]["features_s"]
        bare = {size: bare_forward(spec, model, crops, settings, device, size) for size in bare_batches}
        # Alternate the two sides of (b) and keep each one's best, so other load on the machine biases neither.
        for _ in range(args.repeats - 1):
            again, again_s = timed(evaluate, settings)
            warm_s, features_s = min(warm_s, again_s), min(features_s, again.manifest["timings"]["features_s"])
            bare = {size: min(s, bare_forward(spec, model, crops, settings, device, size)) for size, s in bare.items()}
        best_batch = min(bare, key=bare.get)
        forward_s = bare[best_batch]
        x = spec.input.normalise(torch.rand(2, 3, *reversed(spec.input.template.size), device=device) * 255)
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            model(x)
        flops_per_image = counter.get_total_flops() / 2
        images = 2 * len(crops)
        achieved = flops_per_image * images / forward_s / 1e9
        peak = matmul_gflops(device, args.precision)

    pairs = len(naive_scores)
    allocator = "glibc malloc tuned" if tune_allocator()["tuned"] else f"malloc as is ({tune_allocator()['why']})"
    print(f"{args.backbone} {' '.join(args.option)} weights={args.weights} on {device} ({args.precision}), "
          f"lrbench batch {warm.manifest['settings']['batch_size']} ({args.batch_size}), DF {args.df}: {pairs} pairs, "
          f"{len(crops)} unique images, {torch.get_num_threads()} threads, {allocator}")
    print(f"(a) naive per-pair {naive_s:.2f} s vs lrbench cold {cold_s:.2f} s: {naive_s / cold_s:.2f}x faster "
          f"(target >= 1.5); max score difference {agree:.2e}")
    decode_s = warm.manifest["timings"]["decode_align_s"]
    tried = ", ".join(f"{size}: {images / s:.0f}" for size, s in bare.items())
    print(f"(b) bare forward {forward_s:.2f} s (best batch {best_batch}; images/s by batch {tried}) vs lrbench's "
          f"feature stage {features_s:.2f} s: ratio {forward_s / features_s:.2f} (target >= 0.85); whole warm run "
          f"{warm_s:.2f} s: ratio {forward_s / warm_s:.2f}; warm decode+align {decode_s:.2f} s")
    print(f"(c) network {flops_per_image / 1e9:.2f} GFLOP/image, {achieved:.1f} GFLOP/s achieved vs "
          f"{peak:.1f} GFLOP/s for a 4096² matmul ({achieved / peak:.0%})")


if __name__ == "__main__":
    main()
