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
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image

GENERATOR_VERSION = 1
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
_IDENTITY_AMPLITUDE = (0.14, 0.10, 0.06, 0.035)
_NUISANCE_AMPLITUDE = (0.05, 0.04, 0.04, 0.045)
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
    if _stored_params(out) == params:
        return paths
    out.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write_all(build, params, progress)
        _swap_into_place(build, out)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return paths


def _check_params(params: dict) -> None:
    for key, value in params.items():
        if not isinstance(value, int) or value < (0 if key == "seed" else 1):
            raise ValueError(f"synthesize: {key} must be a {'non-negative' if key == 'seed' else 'positive'} "
                             f"integer, got {value!r}")
    if params["people_per_fold"] < 2 or params["images_per_person"] < 2:
        raise ValueError("synthesize: people_per_fold and images_per_person must be at least 2 to form pairs")
    if params["image_size"] < 64:
        raise ValueError(f"synthesize: image_size must be at least 64, got {params['image_size']}")
    people, images = params["people_per_fold"], params["images_per_person"]
    most = min(people * images * (images - 1) // 2, people * (people - 1) // 2 * images * images)
    if params["pairs_per_fold"] > most:
        raise ValueError(f"synthesize: {people} people × {images} images give at most {most} distinct "
                         f"same-person pairs per fold, fewer than pairs_per_fold={params['pairs_per_fold']}")


def _stored_params(out: Path) -> dict | None:
    try:
        return json.loads((out / "synth.json").read_text())
    except (OSError, ValueError):
        return None


def _swap_into_place(build: Path, out: Path) -> None:
    """Rename ``build`` to ``out``; an old ``out`` is moved aside first and deleted after."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        os.replace(out, old / "data")
    os.replace(build, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_all(root: Path, params: dict, progress: ProgressCallback | None) -> None:
    paths = SynthPaths.under(root)
    seed, size = params["seed"], params["image_size"]
    n_people = params["folds"] * params["people_per_fold"]
    n_lfw = n_people * params["images_per_person"]
    total = n_lfw + params["train_identities"] * params["train_images_per_identity"]
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    lfw_lines = []
    for person in range(n_people):
        name = LFW_NAME.format(person + 1)
        face = _Identity(np.random.default_rng([seed, _STREAM_LFW, person]), size)
        for k in range(params["images_per_person"]):
            rel = f"{name}/{name}_{k + 1:04d}.jpg"
            rng = np.random.default_rng([seed, _STREAM_LFW, person, k + 1])
            lfw_lines.append(_save(paths.lfw_images / rel, rel, *face.render(rng)))
            tick()
    casia_lines = []
    for identity in range(params["train_identities"]):
        face = _Identity(np.random.default_rng([seed, _STREAM_CASIA, identity]), size)
        for k in range(params["train_images_per_identity"]):
            rel = f"{identity + 1:07d}/{k + 1:03d}.jpg"
            rng = np.random.default_rng([seed, _STREAM_CASIA, identity, k + 1])
            casia_lines.append(_save(paths.train_images / rel, rel, *face.render(rng)))
            tick()
    paths.train_images.mkdir(parents=True, exist_ok=True)
    paths.lfw_landmarks.write_text("".join(lfw_lines))
    paths.train_landmarks.write_text("".join(casia_lines))
    pairs, people = _protocol(params, np.random.default_rng([seed, _STREAM_PAIRS]))
    paths.pairs.write_text(pairs)
    paths.people.write_text(people)
    (root / "synth.json").write_text(json.dumps(params, indent=2) + "\n")


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


def _band_filters(shape: tuple[int, int], wavelengths: np.ndarray, amplitudes: np.ndarray) -> np.ndarray:
    """rfft2-domain filter turning unit white noise into a sum of one-octave bands with those stds."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    two_sided, one_sided = np.hypot(fy, np.fft.fftfreq(shape[1])), np.hypot(fy, np.fft.rfftfreq(shape[1]))
    total = np.zeros_like(one_sided)
    for wavelength, amplitude in zip(wavelengths, amplitudes):
        # Variance of irfft2(band·rfft2(noise)) is the mean of band² over the two-sided spectrum.
        norm = np.sqrt((_octave_band(two_sided, wavelength) ** 2).mean())
        total += amplitude * _octave_band(one_sided, wavelength) / norm
    return total


def _octave_band(frequency: np.ndarray, wavelength: float) -> np.ndarray:
    """Log-Gaussian band-pass around 1/wavelength, one octave wide at half height, zero at DC."""
    with np.errstate(divide="ignore"):
        octaves = np.log2(frequency * wavelength)
    return np.exp(-0.5 * (octaves / 0.42) ** 2)


def _textures(rng: np.random.Generator, shape: tuple[int, int], filters: list[np.ndarray]) -> list[np.ndarray]:
    """Fields from one white-noise draw, one per filter."""
    spectrum = np.fft.rfft2(rng.standard_normal(shape))
    return [np.fft.irfft2(spectrum * f, s=shape).astype(np.float32) for f in filters]


_FILTERS: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def _filters_for(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Identity, nuisance and background filters for ``size``×``size`` fields (cached: built once per size)."""
    if size not in _FILTERS:
        scale = size / _REFERENCE_SIZE
        wavelengths = np.array(_WAVELENGTHS) / _CROP_PER_REFERENCE * scale
        _FILTERS[size] = (
            _band_filters((size, size), wavelengths, np.array(_IDENTITY_AMPLITUDE)),
            _band_filters((size, size), wavelengths, np.array(_NUISANCE_AMPLITUDE)),
            _band_filters((size, size), np.array([_BACKGROUND_WAVELENGTH * scale]), np.array([1.0])),
        )
    return _FILTERS[size]


class _Identity:
    """One person: landmark layout, feature shapes and colours, and a skin texture in the face frame."""

    def __init__(self, rng: np.random.Generator, size: int):
        self.size = size
        s = self.scale = size / _REFERENCE_SIZE
        n = rng.normal
        marks = _BASE_LANDMARKS.copy()
        half_iod = 21.0 * (1 + n(0, 0.03))
        marks[:2, 0] = 125.0 + np.array([-half_iod, half_iod])
        marks[:2, 1] += n(0, 1.0)
        marks[2] += (n(0, 0.7), n(0, 1.5))
        marks[3:, 1] += n(0, 1.5)
        marks[3:, 0] = 125.0 + (marks[3:, 0] - 125.0) * (1 + n(0, 0.05))
        self.landmarks = marks * s
        self.face = (125 * s, 135 * s + n(0, 1.5) * s, 58 * s * (1 + n(0, 0.04)), 78 * s * (1 + n(0, 0.03)))
        self.skin = _f32(np.array([205, 160, 135]) * rng.uniform(0.7, 1.1) * (1 + n(0, 0.04, 3)))
        self.hair = _f32(np.array([60, 45, 35]) * rng.uniform(0.4, 1.6) * (1 + n(0, 0.06, 3)))
        self.iris = _f32(np.array([70, 50, 35]) * rng.uniform(0.5, 1.1))
        self.lips = _f32(np.array([150, 70, 70]) * rng.uniform(0.8, 1.1))
        self.eye_size = (7.5 * s * (1 + n(0, 0.06)), 3.8 * s * (1 + n(0, 0.08)))
        self.brow = (-11.5 * s + n(0, 0.8) * s, 2.2 * s * (1 + n(0, 0.1)), n(0, 0.08))
        self.lip_height = 3.5 * s * (1 + n(0, 0.1))
        identity, chroma = _textures(rng, (size, size), [_filters_for(size)[0], _filters_for(size)[0] * 0.25])
        self.texture = (Image.fromarray(identity), Image.fromarray(chroma))

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

        nuisance, background = _textures(rng, (size, size), list(_filters_for(size)[1:]))
        colour, tint = _f32(rng.uniform(40, 220, 3)), _f32(rng.normal(0, 25, 3))
        image = colour + np.float32(rng.uniform(10, 40)) * background[..., None] + tint * across[..., None]
        self._draw(_Canvas(u, v, rotation, shift), image)

        face = _ellipse(u, v, *self.face, 0.0, 1.5 * s)
        texture, chroma = (_warp(field, inverse, origin) for field in self.texture)
        luminance = 1 + face * (texture + nuisance)
        chroma = face * chroma
        image *= np.stack([luminance * (1 + chroma), luminance, luminance * (1 - chroma)], axis=-1)

        light = rng.uniform(0.75, 1.2) * (1 + rng.uniform(-0.35, 0.35) * across + rng.uniform(-0.25, 0.25) * down)
        image *= light[..., None] * _f32(rng.uniform(0.92, 1.08, 3))
        mean = image.mean()
        image = mean + (image - mean) * rng.uniform(0.8, 1.15)
        image += rng.standard_normal(image.shape, dtype=np.float32) * rng.uniform(2, 5)
        pixels = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        landmarks = self.landmarks @ rotation.T + shift
        return pixels, landmarks

    def _draw(self, canvas: _Canvas, image: np.ndarray) -> None:
        """Hair, neck, face, brows, eyes, nose and mouth, back to front."""
        s = self.scale
        cx, cy, ax, ay = self.face
        canvas.paint(image, (cx, cy - 12 * s, ax + 6 * s, ay * 0.8), self.hair, 0.95)
        canvas.paint(image, (cx, cy + 85 * s, ax * 0.6, 40 * s), self.skin * 0.85, 1.0)
        canvas.paint(image, self.face, self.skin, 1.0)
        brow_dy, brow_height, brow_tilt = self.brow
        for side, (ex, ey) in zip((-1, 1), self.landmarks[:2]):
            canvas.paint(image, (ex, ey + brow_dy, 10 * s, brow_height), self.hair, 0.85, -side * brow_tilt)
            canvas.paint(image, (ex, ey, *self.eye_size), _SCLERA, 0.9)
            canvas.paint(image, (ex, ey, 3.4 * s, 3.4 * s), self.iris, 1.0)
            canvas.paint(image, (ex, ey, 1.5 * s, 1.5 * s), _PUPIL, 1.0)
        nx, ny = self.landmarks[2]
        canvas.paint(image, (nx, ny - 2 * s, 8 * s, 5 * s), self.skin * 0.8, 0.5)
        for side in (-1, 1):
            canvas.paint(image, (nx + side * 4.5 * s, ny + 1.5 * s, 2.2 * s, 1.4 * s), self.skin * 0.35, 0.9)
        (lx, ly), (rx, ry) = self.landmarks[3:]
        mouth = ((lx + rx) / 2, (ly + ry) / 2, np.hypot(rx - lx, ry - ly) / 2)
        slope = np.arctan2(ry - ly, rx - lx)
        canvas.paint(image, (*mouth, self.lip_height), self.lips, 0.85, slope)
        canvas.paint(image, (*mouth, 0.8 * s), self.lips * 0.4, 0.9, slope)


def _f32(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


class _Canvas:
    """Paints soft ellipses given in face-frame coordinates, only inside each shape's bounding box."""

    def __init__(self, u: np.ndarray, v: np.ndarray, rotation: np.ndarray, shift: np.ndarray):
        self.u, self.v, self.rotation, self.shift = u, v, rotation, shift
        self.zoom = float(np.sqrt(abs(np.linalg.det(rotation))))

    def paint(self, image: np.ndarray, shape: tuple, colour: np.ndarray, opacity: float, angle: float = 0.0):
        cx, cy, ax, ay = shape
        px, py = self.rotation @ np.array([cx, cy]) + self.shift
        reach = max(ax, ay) * self.zoom + 3
        h, w = self.u.shape
        rows = slice(int(np.clip(py - reach, 0, h)), int(np.clip(py + reach + 1, 0, h)))
        cols = slice(int(np.clip(px - reach, 0, w)), int(np.clip(px + reach + 1, 0, w)))
        alpha = opacity * _ellipse(self.u[rows, cols], self.v[rows, cols], cx, cy, ax, ay, angle, 0.8)
        image[rows, cols] += alpha[..., None] * (colour - image[rows, cols])


def _ellipse(u: np.ndarray, v: np.ndarray, cx, cy, ax, ay, angle: float, edge: float) -> np.ndarray:
    """Coverage (0…1) of an ellipse with an anti-aliased border about ``edge`` pixels wide."""
    c, s = np.cos(angle), np.sin(angle)
    du, dv = u - cx, v - cy
    r = np.hypot((c * du + s * dv) / ax, (c * dv - s * du) / ay)
    return np.clip((1 - r) * min(ax, ay) / edge + 0.5, 0, 1)


def _warp(field: Image.Image, inverse: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Sample a face-frame field at every output pixel (u, v) = inverse·(x, y) + origin, bilinearly.

    Coordinates put pixel centres at integers; PIL puts them at +0.5, hence the offsets.
    """
    a, b, c, d = (float(value) for value in inverse.ravel())
    offset = origin + 0.5 - inverse @ np.array([0.5, 0.5], dtype=np.float32)
    coeffs = (a, b, float(offset[0]), c, d, float(offset[1]))
    return np.asarray(field.transform(field.size, Image.AFFINE, coeffs, resample=Image.BILINEAR))


_GRIDS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates of a size×size image (cached; read-only)."""
    if size not in _GRIDS:
        y, x = np.mgrid[0:size, 0:size].astype(np.float32)
        y.flags.writeable = x.flags.writeable = False
        _GRIDS[size] = (y, x)
    return _GRIDS[size]
