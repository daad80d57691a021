"""Pack LFW as aligned crops of one backbone's template, as JPEG: a folder small enough to carry to a GPU machine.

    python benchmarks/pack_lfw_crops.py ../shared/data/lfw runs/lfw-dlib150                # dlib-resnet, 150×150
    python benchmarks/pack_lfw_crops.py ../shared/data/lfw runs/lfw-dlib150 --quality 80   # a chosen quality

Every image of ``SOURCE/lfw-deepfunneled`` is aligned with lrbench's own alignment (``lrbench.data.crops``, the
landmarks of ``SOURCE/landmarks.txt``) onto the backbone's registered crop template and written as
``OUT/NAME/NAME_NNNN.jpg`` beside copies of ``pairs.txt`` and ``people.txt``; ``OUT/pack.json`` records the
source, template, quality and sizes. ``lrbench run --data OUT --aligned`` and ``lrbench train distill --data
OUT --aligned --people OUT/people.txt`` then use it as the originals, apart from the JPEG re-encoding.

``--quality auto`` (default) encodes a sample at several qualities and takes the highest whose projected
total fits ``--budget-mib``. The default budget is what a device call can carry beside the rest: 64 MiB in
all, less dlib's weights (21.4 MiB, which must travel too), the working tree (about 3 MiB) and headroom.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from lrbench import registry
from lrbench.data.align import ALIGN_VERSION
from lrbench.data.crops import decoder_versions, load_crops
from lrbench.data.landmarks import landmarks_for
from lrbench.fileio import built_in_place, image_files, sha256_file, write_atomic
from lrbench.specs import CropTemplate

QUALITIES = (95, 90, 85, 80, 75, 70, 68, 65, 62, 60, 55, 50)
# 4:2:0 (libjpeg's default; at equal size it kept more detail here than 4:4:4 at a lower quality) with optimised
# Huffman tables (12 % smaller at equal pixels; progressive JPEG was larger again at these sizes).
JPEG_OPTIONS = {"subsampling": 2, "optimize": True}
CHUNK = 500  # images aligned at once: bounds memory (a 150×150 crop is 66 KiB)


def _jpeg(crop: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(crop).save(buffer, "JPEG", quality=quality, **JPEG_OPTIONS)
    return buffer.getvalue()


def _crops(root: Path, images: list[str], template: CropTemplate, landmarks: Path) -> np.ndarray:
    """Aligned crops of ``images``: lrbench's own decoding and alignment (not cached: the packed folder is
    the cache here, and a 13,233-image entry would take 0.9 GB)."""
    points = landmarks_for(images, landmarks, root)
    crops, _ = load_crops(root, images, template, points, workers=2, cache_dir=None, show_progress=False)
    return crops


def choose_quality(root: Path, images: list[str], template: CropTemplate, landmarks: Path, budget: float,
                   sample: int) -> tuple[int, dict[int, float]]:
    """The highest quality whose size, projected from ``sample`` images, fits ``budget`` bytes for all images."""
    chosen = sorted(random.Random(0).sample(images, min(sample, len(images))))
    crops = _crops(root, chosen, template, landmarks)
    projected = {quality: sum(len(_jpeg(crop, quality)) for crop in crops) * len(images) / len(chosen)
                 for quality in QUALITIES}
    fitting = [quality for quality, size in projected.items() if size <= budget]
    if not fitting:
        raise SystemExit(f"--budget-mib: even quality {min(QUALITIES)} needs {projected[min(QUALITIES)] / 2**20:.1f} "
                         "MiB; raise the budget")
    return max(fitting), projected


def pack(source: Path, out: Path, backbone: str, quality: int) -> dict:
    """Write the packed folder (built beside ``out`` and swapped in); returns what pack.json records."""
    root, landmarks = source / "lfw-deepfunneled", source / "landmarks.txt"
    template = registry.backbone(backbone).input.template
    images = image_files(root)
    total = 0
    with built_in_place(out) as folder:
        for start in range(0, len(images), CHUNK):
            chunk = images[start : start + CHUNK]
            for rel, crop in zip(chunk, _crops(root, chunk, template, landmarks)):
                data = _jpeg(crop, quality)
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                write_atomic(folder / rel, data)
                total += len(data)
            print(f"{min(start + CHUNK, len(images))}/{len(images)} images", file=sys.stderr, flush=True)
        for name in ("pairs.txt", "people.txt"):
            shutil.copyfile(source / name, folder / name)
        record = {
            "source": str(root.resolve()),
            "landmarks_file": str(landmarks.resolve()),
            "landmarks_sha256": sha256_file(landmarks),
            "backbone": backbone,
            "template": template.name,
            "crop_size": list(template.size),
            "align_version": ALIGN_VERSION,
            "decoders": decoder_versions(),
            "jpeg_quality": quality,
            "jpeg_options": JPEG_OPTIONS,
            "images": len(images),
            "image_bytes": total,
            "image_mib": round(total / 2**20, 2),
        }
        write_atomic(folder / "pack.json", json.dumps(record, indent=2) + "\n")
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="LFW folder: lfw-deepfunneled/, pairs.txt, people.txt, landmarks.txt")
    parser.add_argument("out", type=Path, help="The packed folder (replaced if it exists)")
    parser.add_argument("--backbone", default="dlib-resnet", help="Whose crop template (default: dlib-resnet)")
    parser.add_argument("--quality", default="auto", help="JPEG quality 1-95, or auto (see --budget-mib)")
    parser.add_argument("--budget-mib", type=float, default=36.0, help="auto: the most the images may take")
    parser.add_argument("--sample", type=int, default=600, help="auto: images encoded to project the size")
    args = parser.parse_args()

    if args.quality == "auto":
        root, template = args.source / "lfw-deepfunneled", registry.backbone(args.backbone).input.template
        quality, projected = choose_quality(root, image_files(root), template, args.source / "landmarks.txt",
                                            args.budget_mib * 2**20, args.sample)
        sizes = ", ".join(f"q{q} {size / 2**20:.1f}" for q, size in projected.items())
        print(f"projected MiB from {args.sample} images: {sizes}; chosen: quality {quality}", flush=True)
    else:
        quality = int(args.quality)
    record = pack(args.source, args.out, args.backbone, quality)
    print(f"{args.out}: {record['images']} aligned {record['crop_size'][0]}×{record['crop_size'][1]} crops, JPEG "
          f"quality {quality}, {record['image_mib']} MiB")


if __name__ == "__main__":
    main()
