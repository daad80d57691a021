"""The built-in MTCNN detector against facenet-pytorch's landmarks on LFW, and batched against one image at a time.

    python benchmarks/bench_detector.py                        # (a) on all 13,233 LFW images, (b) on 300
    python benchmarks/bench_detector.py --limit 2000 --speed-images 300 --threads 2
    python benchmarks/bench_detector.py --skip-accuracy --device cuda --batch-size 64

(a) Accuracy: the shared LFW landmarks.txt was made by facenet-pytorch 2.6.0's MTCNN with the weights lrbench
    ships (default settings, the face nearest the image centre), so it is the reference. Per image the error is
    the largest of the five point distances (pixels) of the detected face nearest the image centre; shown are
    its median, 95th and 99th percentiles, the fractions within 1 and 2 px, the per-point medians and the
    images where no face was found. --limit N takes N images spread evenly over the file.
(b) Speed: images/s of the batched detector (lists of --batch-size images, as `lrbench landmarks` passes them)
    against the facenet-pytorch-style loop over single images (the same code, a batch of 1), on the same
    decoded images, in alternating rounds; the ratio of the median round times is the speed-up. Decoding is
    not timed. Both wall-clock and process CPU time are shown (CPU time is steadier on a shared machine).
"""

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lrbench import registry

SHARED_LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw"
POINTS = ("left eye", "right eye", "nose", "left mouth", "right mouth")


def read_reference(root: Path, limit: int | None) -> list[tuple[str, np.ndarray]]:
    """(relative path, (5, 2) points) of landmarks.txt, or ``limit`` of them spread evenly over it."""
    rows = []
    for line in (root / "landmarks.txt").read_text().splitlines():
        name, *values = line.split("\t")
        rows.append((name, np.array(values, float).reshape(5, 2)))
    if limit is not None and limit < len(rows):
        rows = [rows[i] for i in np.linspace(0, len(rows) - 1, limit).round().astype(int)]
    return rows


def decode(root: Path, name: str) -> np.ndarray:
    return np.asarray(Image.open(root / "lfw-deepfunneled" / name).convert("RGB"))


def nearest_centre_points(faces, image: np.ndarray) -> np.ndarray | None:
    if not faces:
        return None
    centre = np.array(image.shape[1::-1]) / 2
    face = min(faces, key=lambda f: np.hypot(*(np.add(f.box[:2], f.box[2:]) / 2 - centre)))
    return face.points


def accuracy(detect, root: Path, limit: int | None, batch_size: int) -> None:
    rows = read_reference(root, limit)
    distances, missing = [], []
    start = time.perf_counter()
    for first in range(0, len(rows), batch_size):
        batch = rows[first : first + batch_size]
        images = [decode(root, name) for name, _ in batch]
        for (name, reference), image, faces in zip(batch, images, detect(images)):
            points = nearest_centre_points(faces, image)
            if points is None:
                missing.append(name)
            else:
                distances.append(np.linalg.norm(points - reference, axis=1))
        print(f"\r  {first + len(batch)}/{len(rows)} images", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    distances = np.array(distances).reshape(-1, 5)
    worst = distances.max(1)
    print(f"\n(a) point error against LFW landmarks.txt: {len(rows)} images, {time.perf_counter() - start:.0f} s")
    print("| images | no face | median px | p95 px | p99 px | max px | ≤ 1 px | ≤ 2 px |")
    print("|---|---|---|---|---|---|---|---|")
    within = [f"{np.mean(worst <= t) * len(worst) / len(rows):.2%}" for t in (1, 2)]  # a missed face is a miss
    print(
        f"| {len(rows)} | {len(missing)} | {np.median(worst):.4f} | {np.percentile(worst, 95):.4f} "
        f"| {np.percentile(worst, 99):.4f} | {worst.max():.3f} | {within[0]} | {within[1]} |"
    )
    print("error = the largest of the five point distances; per-point medians: "
          + ", ".join(f"{p} {m:.4f}" for p, m in zip(POINTS, np.median(distances, 0))))  # fmt: skip
    if missing:
        print(f"no face: {', '.join(missing[:5])}" + (f", … ({len(missing)} in all)" if len(missing) > 5 else ""))


def speed(detect, root: Path, count: int, batch_size: int, rounds: int) -> None:
    images = [decode(root, name) for name, _ in read_reference(root, count)]

    def batched():
        for first in range(0, len(images), batch_size):
            detect(images[first : first + batch_size])

    def one_at_a_time():
        for image in images:
            detect([image])

    detect(images[:2])  # warm-up: allocations, kernels
    times = {batched: [], one_at_a_time: []}
    for _ in range(rounds):
        for run in times:
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            times[run].append((time.perf_counter() - wall, time.process_time() - cpu))
    (bw, bc), (sw, sc) = (np.median(times[run], 0) for run in (batched, one_at_a_time))
    print(f"\n(b) speed on {len(images)} LFW images, {rounds} alternating rounds (medians), "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print("| detector | images/s (wall) | images/s (CPU time) |")
    print("|---|---|---|")
    print(f"| one image at a time (facenet-pytorch style) | {len(images) / sw:.1f} | {len(images) / sc:.1f} |")
    print(f"| batched, {batch_size} images per call | {len(images) / bw:.1f} | {len(images) / bc:.1f} |")
    print(f"| **speed-up** | **{sw / bw:.2f}×** | **{sc / bc:.2f}×** |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_LFW, help="LFW folder with landmarks.txt")
    parser.add_argument("--limit", type=int, help="(a) on this many images, spread evenly (default: all)")
    parser.add_argument("--speed-images", type=int, default=300, help="(b) on this many images")
    parser.add_argument("--rounds", type=int, default=3, help="(b) timed rounds of each way")
    parser.add_argument("--batch-size", type=int, default=32, help="images per detector call")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    if not (args.data / "landmarks.txt").is_file():
        sys.exit(f"{args.data}: no landmarks.txt (the shared LFW copy is needed)")
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = registry.detector("mtcnn")
    detect = spec.build(None, torch.device(args.device), **spec.options)
    print("$ python " + " ".join(map(shlex.quote, sys.argv)))
    print(f"mtcnn {spec.options}, device {args.device}, batch size {args.batch_size}")
    if not args.skip_speed:
        speed(detect, args.data, args.speed_images, args.batch_size, args.rounds)
    if not args.skip_accuracy:
        accuracy(detect, args.data, args.limit, args.batch_size)


if __name__ == "__main__":
    main()
