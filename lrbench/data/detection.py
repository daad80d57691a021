"""Finding the five landmarks of raw images with a registered face detector.

Two users: ``lrbench landmarks`` writes a landmark file for a folder (resumable, with the images that got
no landmarks listed beside it), and ``lrbench run``/``embed``/``train --detector`` detect on the fly. Both
write the same format, a landmark file whose first line is a ``#`` comment holding, as JSON, what made it
(detector, options, weights' SHA-256, face choice); on the fly, that file is the cache entry, so a later run
reads it like any landmark file and the detector is not called again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .. import registry
from ..errors import DataError, LrbenchError, UsageError, brief_list
from ..fileio import IMAGE_SUFFIXES, image_files, read_text_lines, sha256_file, write_all_atomic, write_atomic
from ..options import parse_options
from ..plugins import plugin_origin
from ..progress import progress_bar, warn
from ..specs import Face
from .crops import decoded_image, decoder_versions, images_digest, max_image_pixels

PICKS = ("center", "largest", "score")
DEFAULT_DETECTOR = "mtcnn"
DEFAULT_BATCH = 32
# The header line of every landmark file lrbench writes; bump FORMAT when its meaning changes.
HEADER_PREFIX = "# lrbench landmarks "
FORMAT = 1
NO_FACE = "no face"
# Images between two checkpoints of ``lrbench landmarks``: an interrupt loses at most this many detections.
CHECKPOINT_EVERY = 256


def find_images(root: Path) -> list[str]:
    """The images under ``root`` (``fileio.image_files``); a folder with none is an error."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"DATA {root}: not a folder")
    images = image_files(root)
    if not images:
        raise DataError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) in it or its sub-folders")
    return images


def read_rgb(path: Path, limit: int | None = None) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB, converted the way alignment converts it (greyscale, palette,
    CMYK and alpha by Pillow's ``convert("RGB")``), so the detector sees the pixels the crop is cut from."""
    with decoded_image(path, limit or max_image_pixels()) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


@dataclass
class Detector:
    """A built detector with everything that decides its output: name, options, weights files' digests."""

    name: str
    plugin: str
    options: dict[str, Any]
    detect: Callable[[list[np.ndarray]], list[list[Face]]]
    weights: list[tuple[Path, str | None]]  # each file and its SHA-256

    def identity(self) -> dict[str, Any]:
        """What the landmarks depend on, without machine-specific paths: the cache key and file header."""
        return {"detector": self.name, "options": self.options, "weights_sha256": [sha for _, sha in self.weights]}

    def describe(self) -> dict[str, Any]:
        """For manifests: the identity, the plugin's origin and where the weights files are."""
        return {
            "name": self.name,
            **plugin_origin(self.plugin),
            "options": self.options,
            "weights": [{"file": str(path), "sha256": sha} for path, sha in self.weights],
        }


def load_detector(name: str, weights: Path | None, device, option_items: tuple[str, ...] | list[str] = ()) -> Detector:
    """Build the registered detector ``name`` with ``--detector-option`` values and ``--detector-weights``.

    A ``ValueError`` from the plugin's ``build`` (weights it cannot use, an option value it refuses) becomes
    a one-line usage error naming the option.
    """
    found = registry.entry("detector", name)
    spec = found.spec
    options = spec.effective_options(parse_options(spec, option_items, "--detector-option"))
    if weights is not None and not Path(weights).exists():
        raise UsageError(f"--detector-weights {weights}: no such file or folder")
    try:
        detect = spec.build(None if weights is None else Path(weights), device, **options)
    except ValueError as exc:
        flag = f"--detector-weights {weights}" if weights is not None else f"--detector {name}"
        raise UsageError(f"{flag}: {exc}") from None
    files = [Path(file) for file in getattr(detect, "weights_files", ())]
    if weights is not None and Path(weights).is_file() and Path(weights) not in files:
        files.insert(0, Path(weights))
    return Detector(name, found.plugin, options, detect, [(file, sha256_file(file)) for file in files])


def pick_face(faces: list[Face], width: int, height: int, how: str = "center") -> Face | None:
    """The face to keep of several: nearest the image centre (box centres), the largest box or the highest
    score; the first of equals. None when there is none."""
    if not faces:
        return None
    if how == "score":
        return max(faces, key=lambda face: face.score)
    if how == "largest":
        return max(faces, key=lambda face: (face.box[2] - face.box[0]) * (face.box[3] - face.box[1]))
    centre_x, centre_y = width / 2, height / 2
    return min(faces, key=lambda face: math.hypot((face.box[0] + face.box[2]) / 2 - centre_x,
                                                  (face.box[1] + face.box[3]) / 2 - centre_y))


def _unwritable(rel: str) -> str | None:
    """Why a landmark file cannot name this image, if it cannot: its lines are split at white space, and a
    backslash in a path is read as a folder separator (as Windows tools write them)."""
    if any(character.isspace() for character in rel):
        return "its path contains white space, which a landmark file cannot hold; rename it"
    if "\\" in rel:
        return "its path contains a backslash, which a landmark file reads as a folder separator; rename it"
    return None


def _load(root: Path, limit: int, rel: str) -> np.ndarray | str:
    """The decoded image, or why it has no landmarks (it cannot be named or decoded)."""
    reason = _unwritable(rel)
    if reason is not None:
        return reason
    try:
        return read_rgb(root / rel, limit)
    except DataError as exc:
        return str(exc).removeprefix(f"{root / rel}: ")


def detect_batches(
    root: Path, images: list[str], detector: Detector, pick: str = "center", batch_size: int = DEFAULT_BATCH,
    workers: int = 2,
) -> Iterator[dict[str, np.ndarray | str]]:
    """Per batch of ``images``: each image's (5, 2) points (rounded to the landmark files' 2 decimals) or the
    reason it has none (``NO_FACE``, or why it cannot be read). The next batch is decoded while the detector
    runs on this one."""
    load = partial(_load, root, max_image_pixels())
    batches = [images[start : start + batch_size] for start in range(0, len(images), batch_size)]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        upcoming = pool.map(load, batches[0]) if batches else iter(())
        for index, names in enumerate(batches):
            decoded = list(upcoming)
            if index + 1 < len(batches):
                upcoming = pool.map(load, batches[index + 1])  # submitted now, decoded while the detector runs
            yield _detect_one_batch(names, decoded, detector, pick)


def _detect_one_batch(
    names: list[str], decoded: list[np.ndarray | str], detector: Detector, pick: str
) -> dict[str, np.ndarray | str]:
    results: dict[str, np.ndarray | str] = {rel: item for rel, item in zip(names, decoded) if isinstance(item, str)}
    readable = [(rel, item) for rel, item in zip(names, decoded) if not isinstance(item, str)]
    if not readable:
        return results
    found = detector.detect([image for _, image in readable])
    if len(found) != len(readable):
        raise LrbenchError(f"detector {detector.name!r} (plugin {detector.plugin!r}) returned {len(found)} results "
                           f"for {len(readable)} images; it must return one list of faces per image")
    for (rel, image), faces in zip(readable, found):
        face = pick_face(list(faces), image.shape[1], image.shape[0], pick)
        if face is None:
            results[rel] = NO_FACE
            continue
        points = np.asarray(face.points, dtype=np.float64)
        if points.shape != (5, 2):
            raise LrbenchError(f"detector {detector.name!r} (plugin {detector.plugin!r}) gave points of shape "
                               f"{points.shape} for {rel}; Face.points must be (5, 2)")
        results[rel] = np.round(points, 2)
    return results


def landmark_lines(results: dict[str, np.ndarray | str]) -> str:
    """One tab-separated line per image with points (2 decimals), sorted by path."""
    return "".join(rel + "".join(f"\t{v:.2f}" for v in points.ravel()) + "\n"
                   for rel, points in sorted(results.items()) if not isinstance(points, str))


def landmark_text(results: dict[str, np.ndarray | str], header: dict[str, Any]) -> str:
    """A landmark file: the header comment (JSON), then ``landmark_lines``."""
    return HEADER_PREFIX + json.dumps(header, sort_keys=True) + "\n" + landmark_lines(results)


def read_header(path: Path) -> dict[str, Any] | None:
    """The header of a landmark file lrbench wrote, or None (no such file, or not written by lrbench)."""
    try:
        with open(path, encoding="utf-8") as handle:
            first = handle.readline()
    except (OSError, UnicodeDecodeError):
        return None
    if not first.startswith(HEADER_PREFIX):
        return None
    try:
        header = json.loads(first.removeprefix(HEADER_PREFIX))
    except ValueError:
        return None
    return header if isinstance(header, dict) else None


def without_landmarks_path(out: Path) -> Path:
    """Where ``lrbench landmarks`` lists the images it could not give landmarks: ``<stem>.noface.txt``."""
    return out.with_name(f"{out.stem}.noface.txt")


# The list of images without landmarks: a header line, then ``path<TAB>reason`` per image. A path may hold
# any character but "/" and NUL, so backslash, tab, newline and carriage return are written as escapes.
LISTING_HEADER = ("# images without landmarks: path, tab, reason (in both, \\\\ \\t \\n \\r stand for "
                  "a backslash, tab, newline and carriage return)")
_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {code[1]: character for character, code in _ESCAPES.items()}


def escape_field(text: str) -> str:
    """``text`` with the characters that would break a line of the listing written as escapes."""
    return "".join(_ESCAPES.get(character, character) for character in text)


def unescape_field(text: str) -> str:
    """The inverse of ``escape_field``; a backslash before any other character stands for itself."""
    return re.sub(r"\\([\\tnr])", lambda found: _UNESCAPES[found.group(1)], text)


def listing_text(without: dict[str, str]) -> str:
    """The list of images without landmarks (``read_without_landmarks`` reads it back exactly)."""
    lines = (f"{escape_field(rel)}\t{escape_field(why)}\n" for rel, why in without.items())
    return LISTING_HEADER + "\n" + "".join(lines)


def read_without_landmarks(path: Path) -> dict[str, str]:
    """A list written by ``lrbench landmarks``: image → why it has no landmarks; anything else is a DataError."""
    lines = read_text_lines(path, "list of images without landmarks")
    if lines[0] != LISTING_HEADER:
        raise DataError(f"{path}: not a list of images without landmarks written by lrbench landmarks")
    without = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line and number == len(lines):
            break
        rel, tab, why = line.partition("\t")
        if not tab or "\t" in why:
            raise DataError(f"{path}:{number}: expected a path, a tab and a reason")
        without[unescape_field(rel)] = unescape_field(why)
    return without


def partial_path(out: Path) -> Path:
    """The checkpoint of an unfinished ``lrbench landmarks``: a hidden sibling of ``--out``."""
    return out.with_name(f".{out.name}.partial")


@dataclass
class LandmarkSummary:
    images: int
    found: int
    without: dict[str, str]  # image → why it has no landmarks
    resumed: int  # images whose results came from an interrupted call's checkpoint
    already_done: bool = False


def write_landmark_file(
    root: Path, images: list[str], out: Path, detector: Detector, *, pick: str = "center",
    batch_size: int = DEFAULT_BATCH, workers: int = 2, overwrite: bool = False, show_progress="bar",
) -> LandmarkSummary:
    """``lrbench landmarks``: detect ``images`` (``find_images(root)``), write ``out`` and the list of those
    without landmarks (``without_landmarks_path``) atomically.

    An interrupted call leaves its results in ``partial_path(out)`` (rewritten atomically every
    CHECKPOINT_EVERY images and when it stops), and the next call with the same settings detects only the
    rest. A finished ``out`` made with the same settings is left alone unless ``overwrite``.
    """
    root, out = Path(root), Path(out)
    identity = {"format": FORMAT, "data": str(root.resolve()), **detector.identity(), "pick": pick}
    header = _own_landmark_file(root, images, out)
    if header is not None and not overwrite:
        same = {key: header.get(key) for key in identity} == identity
        if same and header.get("images") != len(images):
            raise UsageError(f"--out {out}: holds the landmarks of {header.get('images')} images, but {root} now has "
                             f"{len(images)}; pass --overwrite to detect again")
        if same:
            return LandmarkSummary(len(images), header.get("images", 0) - header.get("without_landmarks", 0),
                                   {}, 0, already_done=True)
        raise UsageError(f"--out {out}: already exists (made with other settings); pass --overwrite to detect again, "
                         "or choose another file")
    _check_listing(out)
    checkpoint = partial_path(out)
    done = _resume(checkpoint, identity, set(images))
    resumed = len(done)
    todo = [rel for rel in images if rel not in done]
    since = 0
    try:
        label = f"detect faces ({detector.name})" + (f", {resumed} done before" if resumed else "")
        with progress_bar(label, len(todo), show_progress) as steps:
            for results in detect_batches(root, todo, detector, pick, batch_size, workers):
                done.update(results)
                steps.advance(len(results))
                since += len(results)
                if since >= CHECKPOINT_EVERY:
                    _save_checkpoint(checkpoint, identity, done)
                    since = 0
    except BaseException:
        _keep_for_next_call(checkpoint, identity, done, since, len(images))
        raise
    without = {rel: result for rel, result in sorted(done.items()) if isinstance(result, str)}
    header = {**identity, "images": len(images), "without_landmarks": len(without)}
    listing = without_landmarks_path(out)
    try:
        # both or neither: a full disk leaves the previous pair as it was
        write_all_atomic({out: landmark_text(done, header), **({listing: listing_text(without)} if without else {})})
    except BaseException:
        _keep_for_next_call(checkpoint, identity, done, since, len(images))
        raise
    if not without:
        listing.unlink(missing_ok=True)  # an earlier call's list would describe other results
    checkpoint.unlink(missing_ok=True)
    return LandmarkSummary(len(images), len(images) - len(without), without, resumed)


def _resume(checkpoint: Path, identity: dict, images: set[str]) -> dict[str, np.ndarray | str]:
    """The results an interrupted call with the same settings checkpointed (for images still there)."""
    try:
        state = json.loads(checkpoint.read_text())
        if state["identity"] != identity:
            warn(f"{checkpoint}: an interrupted call with other settings; starting afresh")
            return {}
        return {rel: value if isinstance(value, str) else np.asarray(value, dtype=np.float64).reshape(5, 2)
                for rel, value in state["results"].items() if rel in images}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        warn(f"{checkpoint}: unreadable checkpoint of an interrupted call; starting afresh")
        return {}


def _own_landmark_file(root: Path, images: list[str], out: Path) -> dict[str, Any] | None:
    """The header of an existing ``out`` (None if there is none); ``out`` may replace only a landmark file
    lrbench wrote: anything else, such as one of the images under ``root``, is refused."""
    if not out.exists():
        return None
    header = read_header(out)
    if header is None:
        scanned = Path(os.path.relpath(out.resolve(), root.resolve())).as_posix() in images
        what = f"one of the images under {root}" if scanned else "not a landmark file lrbench wrote"
        raise UsageError(f"--out {out}: already exists and is {what}, so lrbench will not replace it; choose "
                         "another file")
    return header


def _check_listing(out: Path) -> None:
    """The list beside ``out`` may replace (or remove) only such a list written by lrbench."""
    listing = without_landmarks_path(out)
    if not listing.exists():
        return
    try:
        read_without_landmarks(listing)
    except DataError:
        raise UsageError(f"--out {out}: {listing} (where the images without landmarks go) already exists and is "
                         "not such a list written by lrbench, so lrbench will not replace it; move it or choose "
                         "another --out") from None


def _keep_for_next_call(checkpoint: Path, identity: dict, done: dict[str, np.ndarray | str], unsaved: int,
                        images: int) -> None:
    """Save what a stopped call detected for the next one, and say so. A checkpoint that cannot be written
    either (a full disk) stays as it was, without a word: the error that stopped the call says why."""
    try:
        if unsaved:
            _save_checkpoint(checkpoint, identity, done)
    except OSError:
        return
    if done:
        warn(f"stopped after {len(done)} of {images} images; they are kept in {checkpoint}, and the same "
             "command continues from there")


def _save_checkpoint(checkpoint: Path, identity: dict, done: dict[str, np.ndarray | str]) -> None:
    results = {rel: value if isinstance(value, str) else value.ravel().tolist() for rel, value in done.items()}
    write_atomic(checkpoint, json.dumps({"identity": identity, "results": results}))


# ---- on the fly: ``--detector`` in run, embed and train ----

_scratch_dir: tempfile.TemporaryDirectory | None = None


def _scratch() -> Path:
    """A private folder for this process's detections when there is no cache folder; removed at exit."""
    global _scratch_dir
    if _scratch_dir is None:
        _scratch_dir = tempfile.TemporaryDirectory(prefix="lrbench-detections-")
    return Path(_scratch_dir.name)


def detection_key(root: Path, images: list[str], detector: Detector, pick: str) -> str:
    """Identity of a detection: the detector, its options and weights' digests, the face choice, the
    decoders' versions, and every image's name and bytes."""
    return hashlib.sha256(json.dumps({"format": FORMAT, **detector.identity(), "pick": pick,
                                      "decoders": decoder_versions(), "images": images_digest(Path(root), images)},
                                     sort_keys=True).encode()).hexdigest()[:24]


def missing_landmarks_message(root: Path, suggested: Path) -> str:
    """What to do when a run has no landmark file: the ways to get landmarks, as one line."""
    return (f"no landmark file for the images in {root}: pass --landmarks FILE, write one with `lrbench landmarks "
            f"{root} --out {suggested}`, detect faces on the fly with --detector {DEFAULT_DETECTOR}, or pass "
            "--aligned for pre-aligned crops")


def detected_landmarks(
    root: Path, images: list[str], detector: Detector, *, cache_dir: Path | None, workers: int = 2,
    show_progress="bar", pick: str = "center",
) -> tuple[Path, dict[str, Any]]:
    """A landmark file for ``images`` made by ``detector``, from the cache folder when an entry verifies.

    Returns the file and its record for the manifest. Images with no face are refused with their list
    (a run would otherwise have to drop pairs, changing the benchmark); an unreadable image is an error
    naming it. The entry is a landmark file whose header carries the key and the SHA-256 of the lines
    below it, so a damaged or foreign entry is detected again, never read.
    """
    key = detection_key(root, images, detector, pick)
    entry = (cache_dir or _scratch()) / f"landmarks-{detector.name}-{key}.txt"
    note = {"detector": detector.describe(), "pick": pick, "images": len(images),
            "cache": {"path": str(entry) if cache_dir else None, "hit": False}}
    header = _verified_entry(entry, key)
    if header is None:
        header = _detect_entry(root, images, detector, pick, workers, show_progress, key)
        entry = _write_entry(entry, header["text"], cache_dir is not None, note)
    else:
        note["cache"]["hit"] = True
    no_face = header["no_face"]
    note["no_face"] = {"count": len(no_face), "first": no_face[:5]}
    if no_face:
        raise DataError(
            f"{root}: detector {detector.name!r} found no face in {len(no_face)} of {len(images)} images: "
            f"{brief_list(no_face)}; a run would have to drop their pairs, so it stops: give their points in a "
            f"landmark file (`lrbench landmarks {root} --out landmarks.txt` writes the others) and pass --landmarks, "
            "or try other --detector-option values"
        )
    return entry, note


def _detect_entry(root, images, detector, pick, workers, show_progress, key) -> dict[str, Any]:
    results: dict[str, np.ndarray | str] = {}
    with progress_bar(f"detect faces ({detector.name})", len(images), show_progress) as steps:
        for batch in detect_batches(root, images, detector, pick, DEFAULT_BATCH, workers):
            unreadable = [(rel, why) for rel, why in batch.items() if isinstance(why, str) and why != NO_FACE]
            if unreadable:
                rel, why = unreadable[0]
                raise DataError(f"{Path(root) / rel}: {why}")
            results.update(batch)
            steps.advance(len(batch))
    no_face = sorted(rel for rel, result in results.items() if isinstance(result, str))
    body = landmark_lines(results)
    header = {"format": FORMAT, "key": key, **detector.identity(), "pick": pick, "images": len(images),
              "no_face": no_face, "sha256": hashlib.sha256(body.encode()).hexdigest()}
    return {**header, "text": HEADER_PREFIX + json.dumps(header, sort_keys=True) + "\n" + body}


def _verified_entry(entry: Path, key: str) -> dict[str, Any] | None:
    """The header of a cache entry whose key and lines verify; None (with a warning if one was there)."""
    try:
        text = entry.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        warn(f"detection cache {entry}: cannot read it ({exc}); detecting again")
        return None
    first, _, body = text.partition("\n")
    header = read_header(entry) if first.startswith(HEADER_PREFIX) else None
    if (header is None or header.get("format") != FORMAT or header.get("key") != key
            or header.get("sha256") != hashlib.sha256(body.encode()).hexdigest()
            or not isinstance(header.get("no_face"), list)):
        warn(f"detection cache {entry}: does not verify; detecting again")
        return None
    return header


def _write_entry(entry: Path, text: str, cached: bool, note: dict) -> Path:
    """Write the entry; a cache folder that cannot take it means a private one for this process."""
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        return write_atomic(entry, text)
    except OSError as exc:
        if not cached:
            raise
        note["cache"]["error"] = f"cannot write it ({exc.strerror or exc})"
        warn(f"detection cache {entry}: {note['cache']['error']}; ran without the cache")
        return write_atomic(_scratch() / entry.name, text)
