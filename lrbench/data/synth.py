"""Synthetic face data in the on-disk formats of LFW and CASIA-WebFace, so tests and demos need no downloads.

Every face shares one drawn structure (skin ellipse, eyes, brows, nose, mouth) so that alignment matters.
Identity lives mostly in a per-person skin texture made of band-passed noise at several wavelengths (plus
small shape and colour differences); each image adds a weaker texture of its own, lighting, colour
jitter, pixel noise, a random similarity pose and JPEG. Downsampling removes the fine wavelengths first,
so verification accuracy falls with the downsampling factor roughly as it does on real faces.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache, partial
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UsageError
from ..fileio import built_in_place

GENERATOR_VERSION = 1  # stored in synth.json; bump when the images change so old datasets are regenerated
JPEG_QUALITY = 92
LFW_NAME = "Synth_Person_{:04d}"

# Geometry is in pixels of a 250×250 image (LFW deep-funneled) and scaled to ``image_size``.
_REFERENCE_SIZE = 250.0
# Left eye, right eye, nose tip, left and right mouth corner: the SphereFace template mapped to an
# interocular distance of 42 px with the eyes at y = 115.
_BASE_LANDMARKS = np.array([[104.0, 115.0], [146.0, 115.0], [125.0, 139.0], [107.5, 164.0], [142.5, 164.0]])
_CROP_PER_REFERENCE = 35.24 / 42.0  # 96×112 crop pixels per reference pixel
# Texture wavelengths in crop pixels and the amplitudes (std of relative luminance change) per wavelength;
# these calibrate the accuracy-vs-DF curve.
_WAVELENGTHS = (3.0, 6.0, 12.0, 24.0)
_IDENTITY_AMPLITUDE = (0.14, 0.10, 0.05, 0.03)
_NUISANCE_AMPLITUDE = (0.02, 0.04, 0.05, 0.05)
_ANISOTROPY = (3.0, 2.0, 0.0, 0.0)  # per wavelength: concentration of a person's texture around one direction
_PIXEL_NOISE = (2.0, 5.0)  # range of the per-image std of Gaussian luminance noise, in grey levels
_BACKGROUND_WAVELENGTH = 40.0  # reference pixels
_STREAM_LFW, _STREAM_CASIA, _STREAM_PAIRS = 0, 1, 2
_SCLERA = np.array([235.0, 232.0, 225.0], dtype=np.float32)
_PUPIL = np.array([15.0, 12.0, 10.0], dtype=np.float32)

ProgressCallback = Callable[[int, int], None]


@dataclass
class SynthPaths:
    """Where the generated files are, laid out as the real datasets."""

    lfw_root: Path
    lfw_images: Path
    pairs: Path
    people: Path
    lfw_landmarks: Path
    train_images: Path
    train_landmarks: Path

    @classmethod
    def under(cls, out: Path) -> SynthPaths:
        """The paths of a dataset written to ``out``."""
        lfw, casia = out / "lfw", out / "casia"
        return cls(
            lfw_root=lfw,
            lfw_images=lfw / "images",
            pairs=lfw / "pairs.txt",
            people=lfw / "people.txt",
            lfw_landmarks=lfw / "landmarks.txt",
            train_images=casia / "images",
            train_landmarks=casia / "landmarks.txt",
        )


def synthesize(
    out: Path,
    *,
    seed: int = 0,
    folds: int = 10,
    pairs_per_fold: int = 30,
    people_per_fold: int = 8,
    images_per_person: int = 4,
    train_identities: int = 40,
    train_images_per_identity: int = 10,
    image_size: int = 250,
    progress: ProgressCallback | None = None,
) -> SynthPaths:
    """Write an LFW-style test set and a CASIA-style training set under ``out``; return their paths.

    Deterministic in ``seed`` and the sizes. Built in a sibling temporary folder and renamed into place,
    so ``out`` is either complete or absent; a complete ``out`` with the same parameters is reused.
    """
    out = Path(out)
    params = {
        "version": GENERATOR_VERSION,
        "seed": seed,
        "folds": folds,
        "pairs_per_fold": pairs_per_fold,
        "people_per_fold": people_per_fold,
        "images_per_person": images_per_person,
        "train_identities": train_identities,
        "train_images_per_identity": train_images_per_identity,
        "image_size": image_size,
    }
    _check_params(params)
    paths = SynthPaths.under(out)
    stored = _stored_params(out)
    if stored == params:
        return paths
    if stored is None and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists and is not a synthetic dataset (no synth.json); refusing to replace it")
    with built_in_place(out) as build:
        _write_all(build, params, progress)
    return paths


def _check_params(params: dict) -> None:
    for key, value in params.items():
        least = 0 if key == "seed" else 1
        if not isinstance(value, int) or value < least:
            raise UsageError(f"synthesize: {key} must be an integer ≥ {least}, got {value!r}")
    if params["people_per_fold"] < 2 or params["images_per_person"] < 2:
        raise UsageError("synthesize: people_per_fold and images_per_person must be at least 2 to form pairs")
    if params["image_size"] < 64:
        raise UsageError(f"synthesize: image_size must be at least 64, got {params['image_size']}")
    people, images = params["people_per_fold"], params["images_per_person"]
    most = people * images * (images - 1) // 2  # same-person pairs are always the scarcer kind
    if params["pairs_per_fold"] > most:
        raise UsageError(
            f"synthesize: {people} people × {images} images give only {most} distinct same-person pairs "
            f"per fold, fewer than pairs_per_fold={params['pairs_per_fold']}"
        )


def _stored_params(out: Path) -> dict | None:
    try:
        return json.loads((out / "synth.json").read_text())
    except (OSError, ValueError):
        return None


def _write_all(root: Path, params: dict, progress: ProgressCallback | None) -> None:
    paths = SynthPaths.under(root)
    jobs = []
    for person in range(params["folds"] * params["people_per_fold"]):
        name = LFW_NAME.format(person + 1)
        images = [f"{name}/{name}_{k:04d}.jpg" for k in range(1, params["images_per_person"] + 1)]
        jobs.append(_Job(_STREAM_LFW, person, paths.lfw_images, images))
    for identity in range(params["train_identities"]):
        images = [f"{identity + 1:07d}/{k:03d}.jpg" for k in range(1, params["train_images_per_identity"] + 1)]
        jobs.append(_Job(_STREAM_CASIA, identity, paths.train_images, images))
    total, done = sum(len(job.images) for job in jobs), 0
    lines: dict[int, list[str]] = {_STREAM_LFW: [], _STREAM_CASIA: []}
    # Threads suffice: numpy, the FFTs, PIL's warp and the JPEG encoder release the GIL for most of the work.
    pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1))
    try:
        for job, written in zip(jobs, pool.map(partial(_write_person, params["seed"], params["image_size"]), jobs)):
            lines[job.stream] += written
            done += len(written)
            if progress is not None:
                progress(done, total)
    finally:
        pool.shutdown(cancel_futures=True)
    paths.lfw_landmarks.write_text("".join(lines[_STREAM_LFW]))
    paths.train_landmarks.write_text("".join(lines[_STREAM_CASIA]))
    pairs, people = _protocol(params, np.random.default_rng([params["seed"], _STREAM_PAIRS]))
    paths.pairs.write_text(pairs)
    paths.people.write_text(people)
    (root / "synth.json").write_text(json.dumps(params, indent=2) + "\n")


@dataclass(frozen=True)
class _Job:
    """One person's images: the random stream (test or training set), index, folder and relative paths."""

    stream: int
    index: int
    folder: Path
    images: list[str]


def _write_person(seed: int, size: int, job: _Job) -> list[str]:
    """Render and save one person's images; return their landmark lines.

    Each person and each image has its own random generator, so the files do not depend on the order
    (or the thread) in which they are made.
    """
    face = _Identity(np.random.default_rng([seed, job.stream, job.index]), size)
    lines = []
    for k, rel in enumerate(job.images, 1):
        image, landmarks = face.render(np.random.default_rng([seed, job.stream, job.index, k]))
        lines.append(_save(job.folder / rel, rel, image, landmarks))
    return lines


def _save(path: Path, rel: str, image: np.ndarray, landmarks: np.ndarray) -> str:
    """Write the JPEG; return its landmark line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="JPEG", quality=JPEG_QUALITY)
    return rel + "".join(f"\t{v:.2f}" for v in landmarks.ravel()) + "\n"


def _protocol(params: dict, rng: np.random.Generator) -> tuple[str, str]:
    """pairs.txt and people.txt (View 2 formats) over identity-disjoint folds of consecutive people."""
    folds, per_fold, people = params["folds"], params["pairs_per_fold"], params["people_per_fold"]
    images = range(1, params["images_per_person"] + 1)
    pair_lines = [f"{folds}\t{per_fold}\n"]
    people_lines = [f"{folds}\n"]
    for fold in range(folds):
        names = [LFW_NAME.format(fold * people + p + 1) for p in range(people)]
        same = [(n, i, j) for n in names for i, j in combinations(images, 2)]
        different = [(a, i, b, j) for a, b in combinations(names, 2) for i in images for j in images]
        for index in sorted(rng.choice(len(same), per_fold, replace=False)):
            pair_lines.append("\t".join(map(str, same[index])) + "\n")
        for index in sorted(rng.choice(len(different), per_fold, replace=False)):
            pair_lines.append("\t".join(map(str, different[index])) + "\n")
        people_lines.append(f"{people}\n")
        people_lines += [f"{n}\t{len(images)}\n" for n in names]
    return "".join(pair_lines), "".join(people_lines)


def _texture_filter(size: int, wavelengths, amplitudes, orientations=None) -> np.ndarray:
    """rfft2-domain filter turning unit white noise into a sum of one-octave bands with those stds.

    With ``orientations``, band k is concentrated around that direction by ``_ANISOTROPY[k]``: a
    person's fine texture then has a characteristic grain, which histogram matchers such as LBP can see.
    """
    _, angle, weight = _frequency_grid(size)
    total = np.zeros_like(angle)
    for k, (wavelength, amplitude) in enumerate(zip(wavelengths, amplitudes)):
        band = _octave_band(size, wavelength)
        if orientations is not None and _ANISOTROPY[k]:
            band = band * np.exp(_ANISOTROPY[k] * (np.cos(2 * (angle - orientations[k])) - 1))
        total += amplitude * band / np.sqrt((weight * band**2).sum())
    return total


@lru_cache(maxsize=8)
def _frequency_grid(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Radius, angle and variance weight of each rfft2 coefficient of a size×size field.

    The weight counts the coefficient's Hermitian mirror, so Σ weight·|H|² is the variance H gives unit
    white noise.
    """
    fy, fx = np.fft.fftfreq(size)[:, None], np.fft.rfftfreq(size)[None, :]
    count = np.full((size, fx.size), 2.0)
    count[:, 0] = 1
    if size % 2 == 0:
        count[:, -1] = 1
    return np.hypot(fy, fx), np.arctan2(fy, fx), count / size**2


@lru_cache(maxsize=32)
def _octave_band(size: int, wavelength: float) -> np.ndarray:
    """Log-Gaussian band-pass around 1/wavelength, one octave wide at half height, zero at DC."""
    radius = _frequency_grid(size)[0]
    with np.errstate(divide="ignore"):
        octaves = np.log2(radius * wavelength)
    return np.exp(-0.5 * (octaves / 0.42) ** 2)


def _textures(rng: np.random.Generator, shape: tuple[int, int], filters: list[np.ndarray]) -> list[np.ndarray]:
    """Filtered fields of one unit white-noise draw, one per filter.

    The noise is drawn directly as its rfft2 spectrum (independent complex Gaussians, E|X|² = h·w), which
    saves a forward FFT; the columns that are their own mirror get double power since irfft2 keeps only
    their Hermitian part.
    """
    h, w = shape
    parts = rng.standard_normal((h, w // 2 + 1, 2))
    spectrum = (parts[..., 0] + 1j * parts[..., 1]) * np.sqrt(h * w / 2)
    spectrum[:, 0] *= np.sqrt(2)
    if w % 2 == 0:
        spectrum[:, -1] *= np.sqrt(2)
    return [np.fft.irfft2(spectrum * f, s=shape).astype(np.float32) for f in filters]


@lru_cache(maxsize=8)
def _nuisance_filter(size: int) -> np.ndarray:
    return _texture_filter(size, _wavelengths(size), _NUISANCE_AMPLITUDE)


@lru_cache(maxsize=8)
def _background_filter(size: int, wavelength: float) -> np.ndarray:
    return _texture_filter(size, [wavelength], [1.0])


def _wavelengths(size: int) -> tuple[float, ...]:
    """The texture wavelengths in pixels of a size×size image."""
    return tuple(w / _CROP_PER_REFERENCE * size / _REFERENCE_SIZE for w in _WAVELENGTHS)


class _Identity:
    """One person: landmark layout, feature shapes and colours, and a skin texture in the face frame."""

    def __init__(self, rng: np.random.Generator, size: int):
        self.size = size
        s = self.scale = size / _REFERENCE_SIZE
        n = rng.normal
        # Shape and colour differences are kept small: they survive any downsampling, and on real faces
        # too little identity survives at 7×8 px to verify much better than chance.
        marks = _BASE_LANDMARKS.copy()
        half_iod = 21.0 * (1 + n(0, 0.03))
        marks[:2, 0] = 125.0 + np.array([-half_iod, half_iod])
        marks[:2, 1] += n(0, 1.0)
        marks[2] += (n(0, 0.7), n(0, 1.5))
        marks[3:, 1] += n(0, 1.5)
        marks[3:, 0] = 125.0 + (marks[3:, 0] - 125.0) * (1 + n(0, 0.05))
        self.landmarks = marks * s
        self.face = (125 * s, 135 * s + n(0, 0.8) * s, 58 * s * (1 + n(0, 0.025)), 78 * s * (1 + n(0, 0.02)))
        self.skin = _f32(np.array([205, 160, 135]) * rng.uniform(0.75, 1.05) * (1 + n(0, 0.04, 3)))
        self.hair = _f32(np.array([60, 45, 35]) * rng.uniform(0.6, 1.4) * (1 + n(0, 0.06, 3)))
        self.iris = _f32(np.array([70, 50, 35]) * rng.uniform(0.7, 1.0))
        self.lips = _f32(np.array([150, 70, 70]) * rng.uniform(0.85, 1.05))
        self.eye_size = (7.5 * s * (1 + n(0, 0.06)), 3.8 * s * (1 + n(0, 0.08)))
        self.brow = (-11.5 * s + n(0, 0.8) * s, 2.2 * s * (1 + n(0, 0.1)), n(0, 0.08))
        self.lip_height = 3.5 * s * (1 + n(0, 0.1))
        orientations = rng.uniform(0, np.pi, len(_WAVELENGTHS))
        grain = _texture_filter(size, _wavelengths(size), _IDENTITY_AMPLITUDE, orientations)
        self.texture = Image.fromarray(_textures(rng, (size, size), [grain])[0])

    def render(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One image (uint8 RGB) of this person in a random pose and lighting, and its five landmarks."""
        size, s = self.size, self.scale
        angle = np.deg2rad(rng.uniform(-10, 10))
        zoom = 1 + rng.uniform(-0.08, 0.08)
        centre = np.array([125.0, 125.0]) * s
        rotation = zoom * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        shift = centre + rng.uniform(-4, 4, 2) * s - rotation @ centre
        y, x = _pixel_grid(size)
        # Face-frame coordinates (u, v) of every output pixel: the inverse of the pose.
        inverse = np.linalg.inv(rotation).astype(np.float32)
        origin = -inverse @ shift.astype(np.float32)
        u = inverse[0, 0] * x + inverse[0, 1] * y + origin[0]
        v = inverse[1, 0] * x + inverse[1, 1] * y + origin[1]
        across, down = (x - np.float32(centre[0])) / size, (y - np.float32(centre[1])) / size

        colour, tint = _f32(rng.uniform(40, 220, 3)), _f32(rng.normal(0, 25, 3))
        image = colour + np.float32(rng.uniform(10, 40)) * _background(rng, size)[..., None] + tint * across[..., None]
        face, (rows, cols) = self._draw(_Canvas(image, u, v, rotation, shift), hairline=rng.normal(-20, 4) * s)
        # Skin texture on the face only: the person's, which moves with the face, and this image's own.
        nuisance = _textures(rng, (size, size), [_nuisance_filter(size)])[0]
        window_origin = origin + inverse @ _f32([cols.start, rows.start])
        texture = _warp(self.texture, inverse, window_origin, face.shape[::-1]) + nuisance[rows, cols]
        image[rows, cols] *= (1 + face * texture)[..., None]

        light = rng.uniform(0.75, 1.2) * (1 + rng.uniform(-0.35, 0.35) * across + rng.uniform(-0.25, 0.25) * down)
        image *= light[..., None] * _f32(rng.uniform(0.92, 1.08, 3))
        contrast, mean = np.float32(rng.uniform(0.8, 1.15)), image.mean()
        image *= contrast
        image += (1 - contrast) * mean
        grain = rng.standard_normal((size, size), dtype=np.float32) * np.float32(rng.uniform(*_PIXEL_NOISE))
        image += grain[..., None] + np.float32(0.5)
        pixels = np.clip(image, 0, 255, out=image).astype(np.uint8)
        landmarks = self.landmarks @ rotation.T + shift
        return pixels, landmarks

    def _draw(self, canvas: _Canvas, hairline: float) -> tuple[np.ndarray, tuple[slice, slice]]:
        """Hair, neck, face, brows, eyes, nose and mouth, back to front; returns the face's coverage.

        ``hairline`` (how far the hair sits above the face centre) varies per image, as hairstyles do.
        """
        s = self.scale
        cx, cy, ax, ay = self.face
        canvas.paint((cx, cy + hairline, ax + 5 * s, ay * 0.85), self.hair, 0.95)
        canvas.paint((cx, cy + 85 * s, ax * 0.6, 40 * s), self.skin * 0.85, 1.0)
        face = canvas.paint(self.face, self.skin, 1.0)
        brow_dy, brow_height, brow_tilt = self.brow
        for side, (ex, ey) in zip((-1, 1), self.landmarks[:2]):
            canvas.paint((ex, ey + brow_dy, 10 * s, brow_height), self.hair, 0.85, -side * brow_tilt)
            canvas.paint((ex, ey, *self.eye_size), _SCLERA, 0.9)
            canvas.paint((ex, ey, 3.4 * s, 3.4 * s), self.iris, 1.0)
            canvas.paint((ex, ey, 1.5 * s, 1.5 * s), _PUPIL, 1.0)
        nx, ny = self.landmarks[2]
        canvas.paint((nx, ny - 2 * s, 8 * s, 5 * s), self.skin * 0.8, 0.5)
        for side in (-1, 1):
            canvas.paint((nx + side * 4.5 * s, ny + 1.5 * s, 2.2 * s, 1.4 * s), self.skin * 0.35, 0.9)
        (lx, ly), (rx, ry) = self.landmarks[3:]
        mouth = ((lx + rx) / 2, (ly + ry) / 2, np.hypot(rx - lx, ry - ly) / 2)
        slope = np.arctan2(ry - ly, rx - lx)
        canvas.paint((*mouth, self.lip_height), self.lips, 0.85, slope)
        canvas.paint((*mouth, 0.8 * s), self.lips * 0.4, 0.9, slope)
        return face


def _f32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth clutter of unit std, made at a quarter of the resolution (it has no fine detail) and enlarged."""
    low = max(size // 4, 16)
    wavelength = _BACKGROUND_WAVELENGTH * low / _REFERENCE_SIZE
    field = _textures(rng, (low, low), [_background_filter(low, wavelength)])[0]
    return np.asarray(Image.fromarray(field).resize((size, size), Image.BICUBIC))


class _Canvas:
    """Paints soft ellipses given in face-frame coordinates, only inside each shape's bounding box."""

    def __init__(self, image: np.ndarray, u: np.ndarray, v: np.ndarray, rotation: np.ndarray, shift: np.ndarray):
        self.image, self.u, self.v, self.rotation, self.shift = image, u, v, rotation, shift
        self.zoom = float(np.sqrt(abs(np.linalg.det(rotation))))

    def paint(
        self, shape: tuple, colour: np.ndarray, opacity: float, angle: float = 0.0
    ) -> tuple[np.ndarray, tuple[slice, slice]]:
        """Blend ``colour`` over the ellipse (cx, cy, ax, ay); returns its coverage and bounding box."""
        cx, cy, ax, ay = shape
        px, py = self.rotation @ np.array([cx, cy]) + self.shift
        reach = max(ax, ay) * self.zoom + 3
        h, w = self.u.shape
        rows = slice(int(np.clip(py - reach, 0, h)), int(np.clip(py + reach + 1, 0, h)))
        cols = slice(int(np.clip(px - reach, 0, w)), int(np.clip(px + reach + 1, 0, w)))
        alpha = opacity * _ellipse(self.u[rows, cols], self.v[rows, cols], cx, cy, ax, ay, angle, 0.8)
        self.image[rows, cols] += alpha[..., None] * (colour - self.image[rows, cols])
        return alpha, (rows, cols)


def _ellipse(u: np.ndarray, v: np.ndarray, cx, cy, ax, ay, angle: float, edge: float) -> np.ndarray:
    """Coverage (0…1) of an ellipse with an anti-aliased border about ``edge`` pixels wide."""
    c, s = np.cos(angle), np.sin(angle)
    du, dv = u - cx, v - cy
    r = np.hypot((c * du + s * dv) / ax, (c * dv - s * du) / ay)
    return np.clip((1 - r) * min(ax, ay) / edge + 0.5, 0, 1)


def _warp(field: Image.Image, inverse: np.ndarray, origin: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Sample a face-frame field at output pixels (x, y) < size, at (u, v) = inverse·(x, y) + origin.

    Coordinates put pixel centres at integers; PIL puts them at +0.5, hence the offsets.
    """
    a, b, c, d = (float(value) for value in inverse.ravel())
    offset = origin + 0.5 - inverse @ np.array([0.5, 0.5], dtype=np.float32)
    coeffs = (a, b, float(offset[0]), c, d, float(offset[1]))
    return np.asarray(field.transform(size, Image.AFFINE, coeffs, resample=Image.BICUBIC))


@lru_cache(maxsize=8)
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates of a size×size image (shared, so read-only)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    y.flags.writeable = x.flags.writeable = False
    return y, x
