"""Five-point landmark files: strict parsing that keeps each entry's line, and exact matching to images."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError, brief_list
from ..fileio import read_text_lines


@dataclass(frozen=True)
class Landmarks:
    """The (N, 5, 2) landmarks of N images, and the line of the file each came from.

    Whether a point set fits its image (inside it, the image large enough) is only known once the image is
    decoded; the lines let that error still name the entry to fix.
    """

    points: np.ndarray
    file: Path
    lines: tuple[int, ...]

    def where(self, index: int) -> str:
        """``file:line`` of image ``index``'s landmarks."""
        return f"{self.file}:{self.lines[index]}"


def read_landmark_lines(path: Path) -> dict[str, tuple[int, np.ndarray]]:
    """Parse a ``relpath x1 y1 … x5 y5`` file strictly into ``{relpath: (line, points)}``.

    A malformed line is an error naming it; so is a path listed twice with different points (both lines
    named); a path repeated with the same points is accepted. Backslashes in paths read as slashes. A line
    that is ``#`` alone or starts with ``# `` (spaces before it allowed) is a comment: ``lrbench landmarks``
    records there how the points were found. A path cannot hold a space, so no entry reads as a comment
    (an image named ``#`` must be followed by a tab, as writers do anyway).
    """
    path = Path(path)
    table: dict[str, tuple[int, np.ndarray]] = {}
    for line_no, line in enumerate(read_text_lines(path, "landmark file"), 1):
        fields = line.split()
        if not fields or line.lstrip(" ").startswith("# ") or fields == ["#"]:
            continue
        if len(fields) != 11:
            raise DataError(f"{path}:{line_no}: expected a path and 10 coordinates, got {len(fields)} fields")
        try:
            values = [float(v) for v in fields[1:]]
        except ValueError:
            raise DataError(
                f"{path}:{line_no}: coordinates must be numbers, got {' '.join(fields[1:])!r}"
            ) from None
        if not all(math.isfinite(v) for v in values):
            raise DataError(f"{path}:{line_no}: coordinates must be finite")
        name, points = fields[0].replace("\\", "/"), np.array(values).reshape(5, 2)
        if name in table:
            first, earlier = table[name]
            if not np.array_equal(earlier, points):
                raise DataError(f"{path}:{line_no}: {name}: different landmarks than on line {first}")
            continue
        table[name] = (line_no, points)
    return table


def read_landmarks(path: Path) -> dict[str, np.ndarray]:
    """``{relpath: (5, 2) points}`` of a landmark file (see ``read_landmark_lines``)."""
    return {name: points for name, (_, points) in read_landmark_lines(path).items()}


def landmarks_for(images: list[str], path: Path, root: Path | None = None) -> Landmarks:
    """The landmarks of ``images`` (paths relative to the image folder ``root``) from the file ``path``.

    Matching is exact: an image's entry is the line whose path equals the image's relative path, or else
    ``<root's folder name>/<relative path>`` (a file written one level up, e.g. ``lfw/Name/Name_0001.jpg``
    for images under ``lfw/``). If a file has both forms for one image with different points, that is an
    error naming both lines. Nothing else matches, so a file written for one image folder never silently
    serves another.
    """
    table = read_landmark_lines(path)
    wanted = set(images)
    points, lines, missing = [], [], []
    for rel in images:
        entry = table.get(rel)
        prefixed = f"{root.name}/{rel}" if root is not None else None
        # A prefixed key that is itself one of the images is that image's entry, not this one's.
        other = table.get(prefixed) if prefixed is not None and prefixed not in wanted else None
        if entry is not None and other is not None and not np.array_equal(entry[1], other[1]):
            raise DataError(
                f"{path}:{entry[0]}: {rel}: different landmarks than line {other[0]} ({prefixed}), "
                "which names the same image"
            )
        entry = entry or other
        if entry is None:
            missing.append(rel)
        else:
            lines.append(entry[0])
            points.append(entry[1])
    if missing:
        raise DataError(f"{path}: no landmarks for {len(missing)} of {len(images)} images: {brief_list(missing)}")
    return Landmarks(np.stack(points) if points else np.empty((0, 5, 2)), Path(path), tuple(lines))
