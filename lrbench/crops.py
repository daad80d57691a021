"""Decode and align each unique image once, and keep the crops on disk for the next run."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .align import align_face, resize_aligned
from .errors import DataError
from .progress import progress_bar
from .specs import CropTemplate

CACHE_FORMAT = 1
_SHOWN = 5


def default_cache_dir() -> Path:
    return Path(os.environ.get("LRBENCH_CACHE_DIR") or Path.home() / ".cache" / "lrbench")


def read_landmarks(path: Path) -> dict[str, np.ndarray]:
    """Parse a ``relpath x1 y1 … x5 y5`` file strictly; a malformed line is an error naming it."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read landmarks: {exc}") from exc
    names, values = [], []
    for line_no, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 11:
            raise DataError(f"{path}:{line_no}: expected a path and 10 coordinates, got {len(fields)} fields")
        try:
            values.append([float(v) for v in fields[1:]])
        except ValueError:
            raise DataError(
                f"{path}:{line_no}: coordinates must be numbers, got {' '.join(fields[1:])!r}"
            ) from None
        if not all(math.isfinite(v) for v in values[-1]):
            raise DataError(f"{path}:{line_no}: coordinates must be finite")
        names.append(fields[0].replace("\\", "/"))
    points = np.asarray(values, dtype=np.float64).reshape(-1, 5, 2)
    table = dict(zip(names, points))
    return table


def landmarks_for(images: list[str], path: Path) -> np.ndarray:
    """The (N, 5, 2) landmarks of ``images``; a file may prefix paths with the image folder's name."""
    table = read_landmarks(path)
    stripped = {key.split("/", 1)[1]: value for key, value in table.items() if "/" in key}
    found, missing = [], []
    for rel in images:
        points = table.get(rel, stripped.get(rel))
        if points is None:
            missing.append(rel)
        else:
            found.append(points)
    if missing:
        raise DataError(f"{path}: no landmarks for {len(missing)} of {len(images)} images: {_some(missing)}")
    return np.stack(found)


def _some(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown + (f", … ({len(items)} in all)" if len(items) > _SHOWN else "")


def _file_stats(root: Path, images: list[str]) -> list[tuple[int, int]]:
    stats, missing = [], []
    for rel in images:
        try:
            st = (root / rel).stat()
            stats.append((st.st_size, st.st_mtime_ns))
        except OSError:
            missing.append(rel)
    if missing:
        raise DataError(f"{len(missing)} of {len(images)} images missing under {root}: {_some(missing)}")
    return stats


def cache_key(root: Path, images: list[str], template: CropTemplate, landmarks: np.ndarray | None) -> str:
    """Identity of a crop set: data (paths, sizes, mtimes), landmark values and the crop template."""
    digest = hashlib.sha256()
    header = {
        "format": CACHE_FORMAT,
        "root": str(root.resolve()),
        "template": [template.size, template.points],
    }
    digest.update(json.dumps(header).encode())
    digest.update(json.dumps(list(zip(images, _file_stats(root, images)))).encode())
    digest.update(b"aligned" if landmarks is None else np.ascontiguousarray(landmarks, np.float64).tobytes())
    return digest.hexdigest()[:24]


def _crop_one(path: Path, template: CropTemplate, landmarks: np.ndarray | None) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image.load()
            if landmarks is None:
                return resize_aligned(image, template)
            return align_face(image, landmarks, template)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: cannot decode image ({exc})") from None


def load_crops(
    root: Path,
    images: list[str],
    template: CropTemplate,
    landmarks: np.ndarray | None,
    *,
    workers: int = 2,
    cache_dir: Path | None = None,
    show_progress: bool = True,
) -> tuple[np.ndarray, dict]:
    """All crops as an (N, H, W, 3) uint8 RGB array; ``landmarks=None`` means images are pre-aligned.

    Returns the crops and a note on the cache (key, path, hit) for the run manifest.
    """
    key = cache_key(root, images, template, landmarks)
    cache_file = cache_dir / f"crops-{template.name}-{key}.npy" if cache_dir else None
    if cache_file is not None and cache_file.is_file():
        try:
            crops = np.load(cache_file, mmap_mode="r")
            if crops.shape == (len(images), template.size[1], template.size[0], 3):
                return np.asarray(crops), {"key": key, "path": str(cache_file), "hit": True}
        except (OSError, ValueError):
            pass  # an unreadable cache entry is rebuilt below
    crops = np.empty((len(images), template.size[1], template.size[0], 3), dtype=np.uint8)

    def work(i: int) -> None:
        crops[i] = _crop_one(root / images[i], template, None if landmarks is None else landmarks[i])

    with (
        progress_bar("decode + align", len(images), show_progress) as steps,
        ThreadPoolExecutor(max(1, workers)) as pool,
    ):
        for _ in pool.map(work, range(len(images))):
            steps.advance()
    if cache_file is not None:
        _save_atomic(cache_file, crops)
    return crops, {"key": key, "path": str(cache_file) if cache_file else None, "hit": False}


def _save_atomic(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
