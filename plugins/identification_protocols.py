"""Identification protocols: lfw-ident (derived from LFW's own people) and the folder layouts in
protocols/identification/*.toml (TinyFace, SCface)."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import numpy as np

from lrbench import (
    DataError,
    IdentificationLayout,
    IdentificationSet,
    ProtocolSpec,
    UsageError,
    check_identification_set,
    hookimpl,
)

LFW_IMAGE_DIRS = (".", "lfw-deepfunneled", "lfw", "images")
_LFW_FILE = re.compile(r"^(?P<name>.+)_(?P<number>\d{4})\.jpg$")
LFW_IDENT_COUNTS = {"people": 5749, "gallery": 1680, "probes": 7484, "distractors": 4069}

LFW_IDENT_DESCRIPTION = (
    "Derived from LFW (not an official LFW protocol): for each of the 1,680 people with two or more images the "
    "first image by number is enrolled and the other 7,484 are mated probes; the 4,069 people with one image "
    "are gallery distractors for closed-set rank-k (5,749 entries) and non-mated probes for open-set TPIR@FPIR "
    "against the 1,680-entry gallery"
)


def load_lfw_ident(data: Path, pairs: Path | None = None) -> IdentificationSet:
    """Every LFW person folder under --data (or lfw-deepfunneled/, lfw/, images/ in it), split as described."""
    if pairs is not None:
        raise UsageError(f"--pairs {pairs}: lfw-ident takes every LFW image, not pairs")
    data = Path(data)
    if not data.is_dir():
        raise UsageError(f"--data {data}: not a directory")
    root = next((data / d for d in LFW_IMAGE_DIRS if _people(data / d)), None)
    if root is None:
        tried = ", ".join(str(data / d) for d in LFW_IMAGE_DIRS)
        raise DataError(f"cannot find LFW's images for lfw-ident: no NAME/NAME_0001.jpg folders in {tried}")
    images, gallery, gallery_ids, probes, probe_ids, singles = [], [], [], [], [], []
    for name in _people(root):
        numbers = sorted(
            int(found["number"])
            for found in map(_LFW_FILE.match, (p.name for p in (root / name).iterdir()))
            if found and found["name"] == name
        )
        first = len(images)
        images.extend(f"{name}/{name}_{number:04d}.jpg" for number in numbers)
        if len(numbers) == 1:
            singles.append(first)
            continue
        gallery.append(first)
        gallery_ids.append(name)
        probes.extend(range(first + 1, len(images)))
        probe_ids.extend([name] * (len(numbers) - 1))
    counts = {"people": len(gallery) + len(singles), "gallery": len(gallery), "probes": len(probes),
              "distractors": len(singles)}
    if counts["people"] == LFW_IDENT_COUNTS["people"] and counts != LFW_IDENT_COUNTS:
        raise DataError(f"{root}: {counts} instead of LFW's {LFW_IDENT_COUNTS}; are images missing or added?")
    singles_array = np.asarray(singles, dtype=np.int64)
    landmarks = next((f / "landmarks.txt" for f in (root, data, data.parent) if (f / "landmarks.txt").is_file()), None)
    ident = IdentificationSet(root, images, np.asarray(gallery, dtype=np.int64), gallery_ids,
                              np.asarray(probes, dtype=np.int64), probe_ids, root, distractors=singles_array,
                              non_mated=singles_array, landmarks=landmarks)
    check_identification_set(ident, unique_gallery_ids=True)
    return ident


def _people(folder: Path) -> list[str]:
    """The person folders (those holding NAME_####.jpg), sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and (p / f"{p.name}_0001.jpg").is_file())


@hookimpl
def register_protocols(register):
    register(ProtocolSpec("lfw-ident", load_lfw_ident, LFW_IDENT_DESCRIPTION,
                          "G. B. Huang, M. Ramesh, T. Berg, E. Learned-Miller. Labeled Faces in the Wild. UMass TR "
                          "07-49, 2007 (the identification split is lrbench's own)",
                          expected=dict(LFW_IDENT_COUNTS), kind="identification"))
    folder = resources.files("lrbench_protocols").joinpath("identification")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            with resources.as_file(entry) as path:
                register(IdentificationLayout.from_toml(path).spec())
