"""LFW-format pairs files and the declarative protocol definitions (protocols/*.toml) built on them."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DataError, UsageError
from .specs import PairSet, ProtocolSpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_SAFE_NAME = re.compile(r"^[^/\\\x00]+$")


@dataclass(frozen=True)
class ProtocolDefinition:
    """A benchmark as declared in a TOML file: where its files are and how image paths are formed."""

    name: str
    description: str
    pairs_file: str = "pairs.txt"
    path_pattern: str = "{name}/{name}_{number:04d}.jpg"
    image_dirs: tuple[str, ...] = (".",)
    landmarks_file: str = "landmarks.txt"
    citation: str = ""
    expected: dict[str, int] = field(default_factory=dict)
    source: str = ""

    @classmethod
    def from_toml(cls, path: Path) -> ProtocolDefinition:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise DataError(f"{path}: cannot read protocol definition: {exc}") from exc
        known = set(cls.__dataclass_fields__) - {"source"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise DataError(f"{path}: unknown keys {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
        for key in ("name", "description"):
            if key not in raw:
                raise DataError(f"{path}: missing required key {key!r}")
        raw["image_dirs"] = tuple(raw.get("image_dirs", (".",)))
        return cls(**raw, source=str(path))

    def spec(self) -> ProtocolSpec:
        return ProtocolSpec(
            name=self.name,
            load=self.load,
            description=self.description,
            citation=self.citation,
            expected=dict(self.expected),
        )

    def load(self, data: Path, pairs: Path | None = None) -> PairSet:
        """Find the pairs file and image folder under ``data``, parse strictly, check paths and counts."""
        data = Path(data)
        if not data.is_dir():
            raise UsageError(f"--data {data}: not a directory")
        pairs = Path(pairs) if pairs else _find_file(data, self.pairs_file, "--pairs")
        records = parse_lfw_pairs(pairs)
        root = self._image_root(data, records[0])
        pair_set = build_pair_set(root, pairs, records, self.path_pattern)
        self._check_expected(pair_set)
        landmarks = pairs.parent / self.landmarks_file
        pair_set.landmarks = landmarks if landmarks.is_file() else None
        return pair_set

    def _check_expected(self, pair_set: PairSet) -> None:
        """A file with the official number of pairs must also have the official unique-image count."""
        want_pairs, want_images = self.expected.get("pairs"), self.expected.get("unique_images")
        if want_pairs == len(pair_set.same) and want_images and len(pair_set.images) != want_images:
            raise DataError(
                f"{pair_set.source}: {len(pair_set.same)} pairs as in official {self.name} but "
                f"{len(pair_set.images)} unique images instead of {want_images}; is the file modified?"
            )

    def _image_root(self, data: Path, first: PairRecord) -> Path:
        candidates = [data / d for d in self.image_dirs]
        probe = self.path_pattern.format(name=first.names[0], number=first.numbers[0])
        for candidate in candidates:
            if (candidate / probe).is_file():
                return candidate
        tried = ", ".join(str(c) for c in candidates)
        raise DataError(f"cannot find the images of {self.name}: {probe} is in none of {tried}")


def _find_file(data: Path, filename: str, option: str) -> Path:
    for folder in (data, data.parent):
        if (folder / filename).is_file():
            return folder / filename
    raise UsageError(f"no {filename} in {data} or its parent; pass {option} FILE")


@dataclass(frozen=True)
class PairRecord:
    line: int
    fold: int
    names: tuple[str, str]
    numbers: tuple[int, int]
    same: bool


def parse_lfw_pairs(path: Path) -> list[PairRecord]:
    """Parse a View-2-format pairs file strictly; any deviation is an error naming the line.

    Header ``folds<TAB>n``; then per fold n lines ``name i j`` (same person) and n lines
    ``name1 i name2 j`` (different people).
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read pairs file: {exc}") from exc
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataError(f"{path}: empty pairs file")
    header = lines[0].split()
    if len(header) != 2 or not all(h.isdigit() and int(h) > 0 for h in header):
        raise DataError(
            f"{path}:1: header must be 'folds<TAB>pairs_per_fold' (e.g. '10\\t300'), got {lines[0]!r}"
        )
    n_folds, per_class = int(header[0]), int(header[1])
    expected_lines = n_folds * 2 * per_class
    body = lines[1:]
    if len(body) != expected_lines:
        raise DataError(
            f"{path}: header promises {n_folds} folds × 2 × {per_class} = {expected_lines} pair lines, "
            f"found {len(body)}"
        )
    records = []
    for offset, text in enumerate(body):
        line_no = offset + 2
        fold, position = divmod(offset, 2 * per_class)
        same = position < per_class
        fields = text.split()
        want = 3 if same else 4
        if len(fields) != want:
            kind = "same-person pair 'name i j'" if same else "different-person pair 'name1 i name2 j'"
            raise DataError(
                f"{path}:{line_no}: expected {want} fields for a {kind} in fold {fold + 1}, got {len(fields)}"
            )
        if same:
            names, raw_numbers = (fields[0], fields[0]), (fields[1], fields[2])
        else:
            names, raw_numbers = (fields[0], fields[2]), (fields[1], fields[3])
        if not all(n.isdigit() and int(n) > 0 for n in raw_numbers):
            raise DataError(f"{path}:{line_no}: image numbers must be positive integers, got {raw_numbers}")
        for name in names:
            if not _SAFE_NAME.match(name) or name in (".", ".."):
                raise DataError(f"{path}:{line_no}: name {name!r} would reach outside the data root")
        records.append(PairRecord(line_no, fold, names, tuple(int(n) for n in raw_numbers), same))
    return records


def build_pair_set(root: Path, source: Path, records: list[PairRecord], pattern: str) -> PairSet:
    """Map pairs to unique image paths, refusing any path that would leave the data root."""
    index: dict[str, int] = {}
    first, second = [], []
    for record in records:
        ids = []
        for name, number in zip(record.names, record.numbers):
            rel = pattern.format(name=name, number=number)
            normal = os.path.normpath(rel)
            if os.path.isabs(normal) or normal.split(os.sep)[0] == "..":
                raise DataError(f"{source}:{record.line}: name {name!r} would reach outside the data root")
            ids.append(index.setdefault(rel, len(index)))
        first.append(ids[0])
        second.append(ids[1])
    return PairSet(
        root=root,
        images=list(index),
        first=np.asarray(first, dtype=np.int64),
        second=np.asarray(second, dtype=np.int64),
        same=np.asarray([r.same for r in records], dtype=bool),
        folds=np.asarray([r.fold for r in records], dtype=np.int64),
        source=source,
        names=[r.names for r in records],
    )
