"""Decode and align each unique image once, and keep the crops on disk for the next run.

A cache entry is one file: a magic line, a JSON header line (format, key, shape, SHA-256 of the pixels)
and the raw (N, H, W, 3) uint8 pixels. Its key covers everything that changes a crop: the bytes of every
image, the landmarks, the template, the alignment code's version and the decoders' versions. An entry is
used only if its header matches and its pixels hash to the recorded digest; otherwise it is rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np
import PIL
from PIL import Image, UnidentifiedImageError, features

from ..errors import DataError, UsageError, brief_list
from ..fileio import write_atomic
from ..progress import progress_bar, warn
from ..specs import CropTemplate
from .align import ALIGN_VERSION, AlignmentError, TemplateConversion, align_face
from .landmarks import Landmarks

CACHE_FORMAT = 2
_MAGIC = b"lrbench crop cache\n"
_HEADER_MAX = 4096
_HASH_CHUNK = 256  # images per thread-pool task: one task per image costs more than hashing it

# Pillow's own decompression-bomb check warns or raises from inside Image.open, where the image's name is
# unknown; lrbench checks each image against MAX_IMAGE_PIXELS itself (``_crop_one``) and names it.
DEFAULT_MAX_IMAGE_PIXELS = 1024 * 1024 * 1024 // 4 // 3  # Pillow's default: a 0.25 GiB 24-bit image
Image.MAX_IMAGE_PIXELS = None


def default_cache_dir() -> Path:
    return Path(os.environ.get("LRBENCH_CACHE_DIR") or Path.home() / ".cache" / "lrbench")


def max_image_pixels() -> int:
    """The largest image (width × height) lrbench decodes: LRBENCH_MAX_IMAGE_PIXELS, else Pillow's default.

    A bigger image is refused rather than decoded: a forged header can claim gigapixels in a few bytes.
    """
    value = os.environ.get("LRBENCH_MAX_IMAGE_PIXELS", "").strip()
    if not value:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit < 1:
        raise UsageError(f"LRBENCH_MAX_IMAGE_PIXELS={value}: expected a whole number of pixels, such as 200000000")
    return limit


def decoder_versions() -> dict[str, str | None]:
    """Pillow and its JPEG library: a new version may decode the same file to different pixels."""
    return {
        "pillow": PIL.__version__,
        "jpeg": features.version_codec("jpg"),
        "libjpeg_turbo": features.version_feature("libjpeg_turbo"),
    }


def file_digests(paths: list[Path]) -> list[bytes | OSError]:
    """SHA-256 of each file's bytes, or why it cannot be read."""
    digests: list[bytes | OSError] = []
    for path in paths:
        try:
            digests.append(hashlib.sha256(path.read_bytes()).digest())
        except OSError as exc:
            digests.append(exc)
    return digests


def images_digest(root: Path, images: list[str], workers: int = 2) -> str:
    """SHA-256 over every image's relative path and bytes: which faces a run saw, whatever their dates or
    folder. Missing or unreadable images are one error naming them."""
    paths = [root / rel for rel in images]
    chunks = [paths[i : i + _HASH_CHUNK] for i in range(0, len(paths), _HASH_CHUNK)]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        digests = [one for chunk in pool.map(file_digests, chunks) for one in chunk]
    missing = [rel for rel, one in zip(images, digests) if isinstance(one, FileNotFoundError)]
    if missing:
        raise DataError(f"{len(missing)} of {len(images)} images missing under {root}: {brief_list(missing)}")
    digest = hashlib.sha256()
    for path, rel, one in zip(paths, images, digests):
        if isinstance(one, OSError):
            raise DataError(f"{path}: cannot read image ({one.strerror or one})")
        digest.update(json.dumps(rel).encode() + one)  # a quoted name then 32 bytes: unambiguous
    return digest.hexdigest()


def cache_key(
    root: Path, images: list[str], template: CropTemplate, landmarks: Landmarks | None, workers: int = 2,
    images_sha256: str | None = None, aligned_to: CropTemplate | None = None,
) -> str:
    """Identity of a crop set: every image's bytes (not its size or date: an image edited in place keeps
    them; ``images_sha256`` when already computed), the landmark values or the framing pre-aligned images
    have (``aligned_to``, when not the template's own), the template, and the versions of the code that
    decodes and aligns."""
    header = {
        "format": CACHE_FORMAT,
        "align": ALIGN_VERSION,
        "decoders": decoder_versions(),
        "template": [template.name, template.size, template.points],
        "landmarks": landmarks is not None,
        "images": images_sha256 or images_digest(root, images, workers),
    }
    if landmarks is None and aligned_to is not None and aligned_to != template:
        header["aligned_to"] = [aligned_to.name, aligned_to.size, aligned_to.points]
    digest = hashlib.sha256(json.dumps(header).encode())
    if landmarks is not None:
        digest.update(np.ascontiguousarray(landmarks.points, np.float64).tobytes())
    return digest.hexdigest()[:24]


DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)


@contextlib.contextmanager
def decoded_image(path: Path, limit: int) -> Iterator[Image.Image]:
    """The image at ``path``, decoded; a file that does not decode, or has more than ``limit`` pixels, is one
    error naming it (the size is checked before the pixels are read)."""
    try:
        image = Image.open(path)
    except DECODE_ERRORS as exc:
        raise DataError(f"{path}: cannot decode image ({exc})") from None
    with image:
        width, height = image.size
        if width * height > limit:
            raise DataError(
                f"{path}: {width}×{height} = {width * height:,} pixels, more than the limit of {limit:,} "
                "(raise it with the environment variable LRBENCH_MAX_IMAGE_PIXELS)"
            )
        try:
            image.load()
        except DECODE_ERRORS as exc:
            raise DataError(f"{path}: cannot decode image ({exc})") from None
        yield eight_bit(image, path)


# Pillow's own conversion of a high-bit-depth mode to "L" clips every value above 255 (most of a 16-bit image).
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def eight_bit(image: Image.Image, path: Path) -> Image.Image:
    """A high-bit-depth greyscale image scaled to 8 bits by the range of its type, so that a 16-bit copy of an
    8-bit image (each value × 257) gives back exactly the original: 16-bit values / 257; 32-bit integers by
    the smallest of 8, 16 or 32 bits that holds their largest value; floats as 0–1 if they lie there, else
    0–255 if they lie there, else stretched over their own range. 16-bit RGB needs nothing: Pillow decodes it
    to 8-bit RGB by its high bytes, which is the same scaling. Other modes are returned as they are."""
    if image.mode not in (*_SIXTEEN_BIT, "I", "F"):
        return image
    values = np.asarray(image, dtype=np.float64)
    if image.mode in _SIXTEEN_BIT:
        scaled = values / 257
    elif image.mode == "I":
        top = float(values.max(initial=0))
        scaled = values if top <= 255 else values / 257 if top <= 65535 else values / (2**32 - 1) * 255
    else:
        low, top = float(values.min(initial=0)), float(values.max(initial=0))
        if not np.isfinite(values).all():
            raise DataError(f"{path}: holds NaN or infinite pixel values")
        if low >= 0 and top <= 1:
            scaled = values * 255
        elif low >= 0 and top <= 255:
            scaled = values
        else:
            scaled = (values - low) / (top - low or 1) * 255
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def _crop_one(path: Path, conversion: TemplateConversion, points: np.ndarray | None, where: str,
              limit: int) -> np.ndarray:
    """One crop: aligned from ``points``, or (none) converted from the framing it is aligned to already;
    ``where`` is the landmark entry (``file:line``) that errors about the points name."""
    with decoded_image(path, limit) as image:
        try:
            return conversion.apply(image) if points is None else align_face(image, points, conversion.target)
        except AlignmentError as exc:
            raise DataError(f"{where}: {path}: {exc}" if where else f"{path}: {exc}") from None


def load_crops(
    root: Path,
    images: list[str],
    template: CropTemplate,
    landmarks: Landmarks | None,
    *,
    workers: int = 2,
    cache_dir: Path | None = None,
    show_progress: bool = True,
    conversion: TemplateConversion | None = None,
    images_sha256: str | None = None,
) -> tuple[np.ndarray, dict]:
    """All crops as an (N, H, W, 3) uint8 RGB array; ``landmarks=None`` means images are pre-aligned, and
    ``conversion`` makes them ``template`` crops (default: their framing unknown, taken to be the template's).
    ``images_sha256``: the images' ``images_digest`` when the caller has it already (hashing reads every file).

    Returns the crops and a note on the cache for the run manifest: the images' digest (``images_digest``),
    the cache key and file, whether it was a
    hit, whether an entry on disk was rebuilt and why, and why the cache could not be used, if it could
    not. A cache entry that does not verify is rebuilt, and a cache folder that cannot be used means
    running without it; either gives one warning, never an error.
    """
    limit = max_image_pixels()
    images_sha256 = images_sha256 or images_digest(root, images, workers)
    conversion = conversion or TemplateConversion(template, template, decided="unknown", assumed=True)
    key = cache_key(root, images, template, landmarks, workers, images_sha256, conversion.source)
    shape = (len(images), template.size[1], template.size[0], 3)
    entry = cache_dir / f"crops-{template.name}-{key}.bin" if cache_dir else None
    note = {"key": key, "images_sha256": images_sha256, "path": str(entry) if entry else None, "hit": False,
            "rebuilt": False, "rebuild_reason": None, "cache_error": None}
    if entry is not None:
        try:
            crops = _read_entry(entry, key, shape)
        except _Unusable as exc:
            note["cache_error"] = str(exc)
            warn(f"crop cache {entry}: {exc}; running without the cache")
        except _Invalid as exc:
            note.update(rebuilt=True, rebuild_reason=str(exc))
            warn(f"crop cache {entry}: {exc}; rebuilding it")
        else:
            if crops is not None:
                note["hit"] = True
                return crops, note
    crops = np.empty(shape, dtype=np.uint8)

    def work(i: int) -> None:
        points, where = (None, "") if landmarks is None else (landmarks.points[i], landmarks.where(i))
        crops[i] = _crop_one(root / images[i], conversion, points, where, limit)

    with (
        progress_bar("decode + align", len(images), show_progress) as steps,
        ThreadPoolExecutor(max(1, workers)) as pool,
    ):
        for _ in pool.map(work, range(len(images))):
            steps.advance()
    if entry is not None and note["cache_error"] is None:
        try:
            _write_entry(entry, key, crops)
        except OSError as exc:
            note["cache_error"] = f"cannot write it ({exc.strerror or exc})"
            warn(f"crop cache {entry}: {note['cache_error']}; ran without the cache")
    return crops, note


class _Invalid(Exception):
    """A cache entry that exists but does not verify: rebuild it."""


class _Unusable(Exception):
    """A cache location in the way of a cache file (a file for the folder, a folder for the file): run
    without the cache rather than delete what the user put there."""


def _read_entry(entry: Path, key: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """The verified crops of ``entry``, or None when there is no entry."""
    try:
        with open(entry, "rb") as handle:
            magic, header_line = handle.read(len(_MAGIC)), handle.readline(_HEADER_MAX)
            offset, size = handle.tell(), os.fstat(handle.fileno()).st_size
            if not size:
                raise _Invalid("empty file")
            if magic != _MAGIC:
                raise _Invalid("not an lrbench crop cache file")
            try:
                header = json.loads(header_line)
                expected = {"format": CACHE_FORMAT, "key": key, "shape": list(shape), "dtype": "uint8"}
                if not isinstance(header, dict) or {k: header.get(k) for k in expected} != expected:
                    raise ValueError("the header does not match")
            except ValueError:
                raise _Invalid("its header does not match this crop set") from None
            count = int(np.prod(shape))
            if size != offset + count:
                raise _Invalid(f"{size:,} bytes, expected {offset + count:,}")
            if not count:
                return np.empty(shape, np.uint8)
            # Mapped, not read: no private copy of what may be gigabytes. Entries are only ever replaced by a
            # rename, never rewritten in place, so the mapped pixels are the ones verified below.
            crops = np.memmap(handle, dtype=np.uint8, mode="r", offset=offset, shape=count)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise _Unusable("a folder is in the way of the cache file") from None
    except NotADirectoryError:
        raise _Unusable("the cache folder's path is not a folder") from None
    except OSError as exc:
        raise _Invalid(f"cannot read it ({exc.strerror or exc})") from None
    if hashlib.sha256(crops).hexdigest() != header.get("sha256"):
        raise _Invalid("its pixels do not match their checksum")
    return np.asarray(crops).reshape(shape)


def _write_entry(entry: Path, key: str, crops: np.ndarray) -> None:
    header = {"format": CACHE_FORMAT, "key": key, "shape": list(crops.shape), "dtype": "uint8",
              "sha256": hashlib.sha256(crops).hexdigest()}

    def write(handle: BinaryIO) -> None:
        handle.write(_MAGIC + json.dumps(header).encode() + b"\n")
        handle.write(memoryview(crops))

    entry.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(entry, write)
