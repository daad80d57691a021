"""Training images: a folder of faces (identity folders give labels), aligned once and held in memory, or an
insightface RecordIO pack (``train.rec``), its aligned crops decoded batch by batch.

Batches are gathered from the in-memory crops; the data order and the per-sample augmentation (mirror
image, degradation factor) are functions of (seed, epoch, batch) only, so a run resumed in the middle
of an epoch sees exactly the batches the interrupted run would have seen, and a run split over several
processes sees exactly the global batches of a single process.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.crops import load_crops
from ..data.landmarks import landmarks_for
from ..data.recordio import RecordPack
from ..errors import DataError, UsageError
from ..fileio import IMAGE_SUFFIXES, image_files, read_text_lines, sha256_file
from ..ranges import parse_ranges
from ..specs import CropTemplate

ALIGN_THREADS = min(4, os.cpu_count() or 1)  # threads decoding and aligning images (once per image)
Degrade = Callable[[torch.Tensor, int], torch.Tensor]  # a degradation at one DF: (NCHW 0…255 batch, DF) → batch


@dataclass
class FaceFolder:
    """The images under ``root``; ``labels`` index ``identities`` (empty, and labels -1, for a flat folder).

    ``source`` says what else the training summary should know of them (a pack's format and index).
    """

    root: Path
    images: Sequence[str]
    labels: np.ndarray
    identities: list[str]
    source: dict = field(default_factory=dict)

    @property
    def has_labels(self) -> bool:
        return bool(self.identities)

    def describe(self) -> dict:
        """What the training found, for its summary."""
        return {"data": str(self.root), "images": len(self.images), "identities": len(self.identities), **self.source}


def read_people(path: Path, folds: str | None = None) -> set[str]:
    """Names listed in ``path``: one per line (extra fields ignored), or LFW's people.txt with its folds.

    people.txt starts with the number of folds, then per fold a count line and that many ``name count``
    lines; ``folds`` ("2-10", 1-based) keeps only those folds' people.
    """
    lines = _people_lines(path)
    if _has_folds(lines):
        per_fold = _people_folds(path, lines)
        chosen = range(1, len(per_fold) + 1) if folds is None else _fold_numbers(folds, path, len(per_fold))
        return {name for fold in chosen for name in per_fold[fold - 1]}
    if folds is not None:
        raise UsageError(f"--people-folds {folds}: {path} is a plain list of names, not a people.txt with folds")
    return {fields[0] for fields in lines}


def people_by_fold(path: Path) -> list[list[str]]:
    """Each fold's names in LFW's people.txt; a plain list of names is a DataError."""
    lines = _people_lines(path)
    if not _has_folds(lines):
        raise DataError(f"{path}: a plain list of names, not a people.txt with folds")
    return _people_folds(path, lines)


def _people_lines(path: Path) -> list[list[str]]:
    return [line.split() for line in read_text_lines(path, "people list") if line.strip()]


def _has_folds(lines: list[list[str]]) -> bool:
    """A fold count first, then only count lines and ``name count`` lines: LFW's people.txt."""
    counts = [fields for fields in lines if len(fields) == 1 and _is_count(fields[0])]
    entries = [fields for fields in lines if len(fields) == 2 and _is_count(fields[1])]
    return bool(entries) and len(counts) + len(entries) == len(lines) and lines[0] in counts


def _is_count(text: str) -> bool:
    """ASCII digits only: str.isdigit also accepts '²' and other scripts' digits, which int() may refuse."""
    return text.isascii() and text.isdigit()


def _fold_numbers(text: str, path: Path, count: int) -> list[int]:
    """``2-10`` or ``1,3`` → fold numbers (1-based), each within 1…count."""
    bound = f"the {count} folds of {path}"
    return parse_ranges(text, "--people-folds", unit="fold", low=1, high=count, bound=bound, example="2-10 or 1,3")


def _people_folds(path: Path, lines: list[list[str]]) -> list[list[str]]:
    folds, position, out = int(lines[0][0]), 1, []
    for _ in range(folds):
        if position >= len(lines) or len(lines[position]) != 1 or not _is_count(lines[position][0]):
            raise DataError(f"{path}: line {position + 1}: expected the number of people in fold {len(out) + 1}")
        count = int(lines[position][0])
        out.append([fields[0] for fields in lines[position + 1 : position + 1 + count]])
        position += 1 + count
    return out


def scan_folder(root: Path, people: set[str] | None = None) -> FaceFolder:
    """Every image under ``root``; when each sits in a sub-folder, the sub-folder is its identity."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"--data {root}: not a directory")
    images = image_files(root)
    if people is not None:
        images = [rel for rel in images if rel.split("/", 1)[0] in people]
    if not images:
        wanted = " of the listed people" if people is not None else ""
        raise DataError(f"{root}: no images{wanted} found ({', '.join(IMAGE_SUFFIXES)}, or any file whose content is "
                        "an image)")
    if all("/" in rel for rel in images):
        names = [rel.split("/", 1)[0] for rel in images]
        identities = sorted(set(names))
        lookup = {name: k for k, name in enumerate(identities)}
        return FaceFolder(root, images, np.array([lookup[n] for n in names], dtype=np.int64), identities)
    return FaceFolder(root, images, np.full(len(images), -1, dtype=np.int64), [])


DIGEST_BASIS = "content"  # a record without it (an earlier lrbench) hashed file dates, which a copy changes
PACK_SAMPLES = 16  # blocks of a pack's .rec hashed for its identity, evenly spaced, first and last included
PACK_BLOCK = 1 << 16


def data_digest(images_sha256: str, landmarks: Path | None) -> dict[str, str | None]:
    """What a resumed run checks to be training on the data it started on: the images' bytes
    (``images_digest``, which the crop cache computes too) and the landmark file's content. Dates are left out:
    a copy to another disk, or a data folder provisioned afresh, is the same data."""
    return {"basis": DIGEST_BASIS, "images": images_sha256, "landmarks": sha256_file(landmarks)}


def pack_digest(pack: RecordPack) -> dict[str, str | None]:
    """A pack's identity for a resumed run: the .rec file's size, the index's content and a sample of the
    .rec's bytes (hashing gigabytes of images would take minutes; an edit that keeps the size and misses every
    sampled block goes unseen)."""
    digest = hashlib.sha256(f"{pack.size}\t{sha256_file(pack.index_path)}".encode())
    last = max(0, pack.size - PACK_BLOCK)
    with pack.path.open("rb") as handle:
        for k in range(PACK_SAMPLES):
            handle.seek(last * k // (PACK_SAMPLES - 1))
            digest.update(handle.read(PACK_BLOCK))
    return {"basis": DIGEST_BASIS, "images": digest.hexdigest(), "landmarks": None}


def aligned_crops(
    folder: FaceFolder,
    template: CropTemplate,
    landmarks: Path | None,
    *,
    workers: int,
    cache_dir: Path | None,
    show_progress: bool,
    images_sha256: str | None = None,
) -> np.ndarray:
    """(N, H, W, 3) uint8 crops of the folder's images for ``template`` (decoded and aligned once, cached)."""
    points = landmarks_for(folder.images, landmarks, folder.root) if landmarks is not None else None
    crops, _ = load_crops(
        folder.root, folder.images, template, points, workers=workers, cache_dir=cache_dir,
        show_progress=show_progress, images_sha256=images_sha256,
    )
    return crops


class CropBatches(torch.utils.data.Dataset):
    """Batches gathered from in-memory crops (one array per crop template), mirrored where asked.

    A sampler yields lists of (index, flip, df); a batch is a dict of tensors: ``index``, ``label``,
    ``flip``, ``df`` and one uint8 (B, H, W, 3) tensor per crop array.
    """

    def __init__(self, crops: dict[str, np.ndarray], labels: np.ndarray):
        self.crops, self.labels = crops, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, items: list[tuple[int, bool, int]]) -> dict[str, torch.Tensor]:
        index = np.array([item[0] for item in items], dtype=np.int64)
        flip = np.array([item[1] for item in items], dtype=bool)
        batch = {
            "index": torch.from_numpy(index),
            "label": torch.from_numpy(self.labels[index]),
            "flip": torch.from_numpy(flip),
            "df": torch.tensor([item[2] for item in items], dtype=torch.int64),
        }
        for name, array in self.crops.items():
            images = array[index]
            images[flip] = images[flip, :, ::-1]
            batch[name] = torch.from_numpy(images)
        return batch


def whole_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The DataLoader's collate function: ``__getitems__`` already returns the batch."""
    return batch


class EpochBatches:
    """This process's share of each global batch of an epoch, from the batch ``start`` on.

    Like torch's DistributedSampler, the epoch's order is a permutation seeded by (seed, epoch) and each
    of ``world`` processes takes a slice of every global batch; unlike it, it can start mid-epoch and
    draws each sample's augmentation (mirror image with probability ½ if ``flip``, a DF from ``dfs``)
    from a generator seeded by (seed, epoch, batch). The last incomplete batch is dropped.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        *,
        seed: int,
        epoch: int,
        start: int = 0,
        rank: int = 0,
        world: int = 1,
        flip: bool = False,
        dfs: list[int] | None = None,
    ):
        self.size, self.batch_size, self.seed, self.epoch, self.start = size, batch_size, seed, epoch, start
        self.rank, self.world, self.flip, self.dfs = rank, world, flip, dfs or [1]
        share = batch_size // world
        self.local = slice(rank * share, (rank + 1) * share)

    def __len__(self) -> int:
        return max(0, self.size // self.batch_size - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, bool, int]]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.size)
        for b in range(self.start, self.size // self.batch_size):
            rng = np.random.default_rng([self.seed, self.epoch, b])
            flips = rng.random(self.batch_size) < 0.5 if self.flip else np.zeros(self.batch_size, dtype=bool)
            dfs = rng.choice(self.dfs, self.batch_size)
            chosen = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield list(zip(chosen[self.local].tolist(), flips[self.local].tolist(), dfs[self.local].tolist()))


def degrade_each(batch: torch.Tensor, dfs: torch.Tensor, apply: Degrade) -> torch.Tensor:
    """Each image of a float NCHW 0…255 batch degraded at its own DF: one call of ``apply`` per distinct DF."""
    out = batch.clone()
    for df in dfs.unique().tolist():
        if df != 1:
            chosen = (dfs == df).nonzero().squeeze(1)
            out[chosen] = apply(batch[chosen], df)
    return out
