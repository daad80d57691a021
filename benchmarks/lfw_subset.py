"""Copy the first folds of an LFW View 2 copy into a small self-contained folder (images, pairs.txt, landmarks.txt).

    python benchmarks/lfw_subset.py ../shared/data/lfw .gpu_data/lfw --folds 1

For carrying real faces to a machine that cannot see the full copy (one fold is about 800 images, 7 MB); the
result is an LFW-format folder that `lrbench run --data` and `benchmarks/bench_speed.py --data` accept.
"""

import argparse
import shutil
from pathlib import Path

from lrbench import registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="LFW folder: lfw-deepfunneled/, pairs.txt, landmarks.txt")
    parser.add_argument("out", type=Path)
    parser.add_argument("--folds", type=int, default=1)
    args = parser.parse_args()

    lines = (args.source / "pairs.txt").read_text().splitlines()
    per_class = int(lines[0].split()[1])
    kept = lines[1 : 1 + 2 * per_class * args.folds]
    args.out.mkdir(parents=True, exist_ok=True)
    pairs_file = args.out / "pairs.txt"
    pairs_file.write_text("\n".join([f"{args.folds}\t{per_class}", *kept]) + "\n")

    images = set(registry.protocol("lfw-view2").load(args.source / "lfw-deepfunneled", pairs_file).images)
    for rel in images:
        (args.out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(args.source / "lfw-deepfunneled" / rel, args.out / rel)
    with open(args.source / "landmarks.txt") as source, open(args.out / "landmarks.txt", "w") as out:
        out.writelines(line for line in source if line.split("\t", 1)[0] in images)
    print(f"{args.out}: {len(kept)} pairs over {len(images)} images")


if __name__ == "__main__":
    main()
