"""Training on a CPU: is the input pipeline faster than the network, and what does the teacher cache save?

    python benchmarks/bench_training.py                  # synthetic faces, SphereFace-4 at width 0.25, DF 8
    python benchmarks/bench_training.py --data DIR --landmarks FILE --backbone dlib-resnet \\
        --weights dlib_face_recognition_resnet_model_v1.dat --df 12

In one run, on the same crops and network:
  (a) the input pipeline alone (the trainers' DataLoader gathering crops with mirror flips, then the degradation
      at --df and normalisation) against training steps of the network (forward, backward, AdamW) on one
      batch; target: the pipeline at least 2× as fast, so that the loader is never what training waits for;
  (b) `lrbench train distill` for --steps with and without --teacher-cache: images/s of each, the speed-up,
      and the one-time cost of filling the cache (paid back after how many steps).
"""

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from lrbench import registry
from lrbench.data.synth import synthesize
from lrbench.training import CropBatches, degradation, network_input, scan_folder, trainable_network
from lrbench.training.data import EpochBatches, aligned_crops, whole_batch

CPU = torch.device("cpu")


def epoch_loader(dataset, batch_size: int, df: int, workers: int = 0) -> torch.utils.data.DataLoader:
    """The trainers' loader: one epoch of batches, each sample mirrored with probability ½, all at ``df``."""
    sampler = EpochBatches(len(dataset), batch_size, seed=0, epoch=0, flip=True, dfs=[df])
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=whole_batch, num_workers=workers)


def pipeline_rate(dataset, spec, batch_size: int, df: int, workers: int, batches: int) -> float:
    """Images/s of gathering, mirroring, degrading and normalising batches, as the training loop gets them."""
    degrade, done = degradation("bicubic", ()), 0
    started = time.perf_counter()
    for batch in epoch_loader(dataset, batch_size, df, workers):
        network_input(batch["crops"], spec.input, CPU, batch["df"], degrade)
        done += 1
        if done == batches:
            break
    return done * batch_size / (time.perf_counter() - started)


def network_rate(network, images: torch.Tensor, steps: int) -> float:
    """Images/s of forward, backward and an AdamW step on one fixed batch (the loss: the embedding's energy)."""
    network.train()
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-6)

    def step():
        loss = network(images).square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * len(images) / (time.perf_counter() - started)


def distill_summary(args, data: Path, landmarks: Path, teacher: str, out: Path, cache: bool) -> dict:
    """Run ``lrbench train distill`` in this process and return its summary.json."""
    options = [arg for option in args.option for arg in ("--teacher-option", option)]
    command = registry.collect("trainer")["distill"].spec.command
    argv = [
        "--data", data, "--landmarks", landmarks, "--teacher", args.backbone, "--teacher-weights", teacher,
        *options, "--df", args.df, "--steps", args.steps, "--batch-size", args.batch_size, "--device", "cpu",
        "--log-every", args.steps, "--checkpoint-every", args.steps, "--no-cache", "--out", out,
        "--teacher-cache" if cache else "--no-teacher-cache",
    ]  # fmt: skip
    with contextlib.redirect_stdout(sys.stderr):
        command.main([str(arg) for arg in argv], prog_name="lrbench train distill", standalone_mode=False)
    return json.loads((out / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="a training folder (default: synthetic faces)")
    parser.add_argument("--landmarks", type=Path, help="its landmark file")
    parser.add_argument("--backbone", default="sphereface")
    parser.add_argument("--weights", help="the teacher's weights (default: a random network saved for the run)")
    parser.add_argument("--option", action="append", help="backbone option (sphereface default: depth=4, width=0.25)")
    parser.add_argument("--df", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="distillation steps in each run of (b)")
    args = parser.parse_args()
    if args.option is None:
        args.option = ["depth=4", "width=0.25"] if args.backbone == "sphereface" else []
    if (args.data is None) != (args.landmarks is None):
        parser.error("--data and --landmarks go together")

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        if args.data is None:
            synthetic = synthesize(scratch / "synth", train_identities=100, train_images_per_identity=8)
            args.data, args.landmarks = synthetic.train_images, synthetic.train_landmarks
        spec, network = trainable_network(args.backbone, args.weights, args.option)
        teacher = args.weights
        if teacher is None:
            teacher = scratch / "teacher.pt"
            torch.save(network.state_dict(), teacher)
        folder = scan_folder(args.data)
        crops = aligned_crops(
            folder, spec.input.template, args.landmarks, workers=2, cache_dir=None, show_progress=False
        )
        dataset = CropBatches({"crops": crops}, folder.labels)
        batches = min(len(dataset) // args.batch_size, 20)
        pipeline = {w: pipeline_rate(dataset, spec, args.batch_size, args.df, w, batches) for w in (0, 2)}
        first = next(iter(epoch_loader(dataset, args.batch_size, args.df)))
        images = network_input(first["crops"], spec.input, CPU, first["df"], degradation("bicubic", ()))
        model = network_rate(network.to(memory_format=torch.channels_last), images, steps=5)

        cached = distill_summary(args, args.data, args.landmarks, teacher, scratch / "cached", cache=True)
        uncached = distill_summary(args, args.data, args.landmarks, teacher, scratch / "uncached", cache=False)

    label = f"{args.backbone} {' '.join(args.option)}".strip()
    print(f"{label} on cpu, batch {args.batch_size}, DF {args.df}: {len(crops)} training crops, "
          f"{torch.get_num_threads()} threads")
    best = max(pipeline.values())
    print(f"(a) input pipeline {pipeline[0]:.0f} images/s (0 workers), {pipeline[2]:.0f} (2 workers) vs training "
          f"step {model:.0f} images/s: pipeline {best / model:.1f}x the network (target >= 2)")
    fill = cached["teacher_cache"]["seconds"]
    speedup = cached["images_per_s"] / uncached["images_per_s"]
    per_step_saved = args.batch_size / uncached["images_per_s"] - args.batch_size / cached["images_per_s"]
    print(f"(b) distill {args.steps} steps: {cached['images_per_s']:.0f} images/s with the teacher cache vs "
          f"{uncached['images_per_s']:.0f} without ({speedup:.2f}x); filling the cache took {fill:.1f} s for "
          f"{cached['teacher_cache']['features']} features, repaid after {fill / max(per_step_saved, 1e-9):.0f} steps")


if __name__ == "__main__":
    main()
