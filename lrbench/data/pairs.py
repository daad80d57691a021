"""LFW-format pairs files and the declarative protocol definitions (protocols/*.toml) built on them."""

from __future__ import annotations

import os
import re
import string
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError, UsageError
from ..fileio import read_text_lines
from ..specs import PairSet, ProtocolSpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_SAFE_NAME = re.compile(r"^[^/\\\x00]+$")
_BLANKS = " \t"  # the field separators: a line of only these is blank
# A positive whole number in ASCII digits (str.isdigit also takes '²' and '٣'), short enough for int64.
_COUNT = re.compile(r"0*[1-9][0-9]{0,17}", re.ASCII)
# Whose image a name-label file's line names, by default: LFW's file naming, PERSON_NUMBER.EXT
# (CALFW's Aaron_Peirsol_0001.jpg, CPLFW's Aaron_Peirsol_1.jpg).
LFW_FILE_NAME = r"(.+)_[0-9]+\.[^./\\]+"


def read_definition(path: Path, keys: dict, required: tuple[str, ...]) -> dict:
    """A protocol definition's TOML table, every key known (``keys``: name → (check, what it must be)),
    the ``required`` ones present and every value valid; a mistake is one error naming the file and key."""
    try:
        raw = tomllib.loads("\n".join(read_text_lines(path, "protocol definition")))
    except tomllib.TOMLDecodeError as exc:
        raise DataError(f"{path}: not a valid TOML file: {exc}") from None
    unknown = sorted(set(raw) - set(keys))
    if unknown:
        raise DataError(f"{path}: unknown keys {', '.join(unknown)}; allowed: {', '.join(sorted(keys))}")
    for key in required:
        if key not in raw:
            raise DataError(f"{path}: missing required key {key!r}")
    for key, value in raw.items():
        valid, want = keys[key]
        if not valid(value):
            raise DataError(f"{path}: {key} must be {want}, got {value!r}")
    return raw


@dataclass(frozen=True)
class ProtocolDefinition:
    """A benchmark as declared in a TOML file: where its files are and how image paths are formed.

    Image ``name number`` of the pairs file is ``path_pattern`` filled in or, when the file has an ``images``
    table (person name → image paths), the number-th path of that person: so a folder whose file names
    follow no pattern (``lrbench pairs make``) still gets an LFW-format pairs file.

    ``pairs_format`` "name-label" reads CALFW's and CPLFW's files instead (``parse_name_label_pairs``),
    whose lines name image files: the path pattern is then ``{name}`` by default, with no ``{number}``.
    ``aligned`` says the images are aligned crops already, so runs need no landmarks (as with ``--aligned``);
    ``aligned_template`` names the framing they are aligned to (as ``--aligned-template``), so that they are
    converted geometrically to each backbone's template.
    """

    name: str
    description: str
    pairs_file: str = "pairs.txt"
    path_pattern: str = "{name}/{name}_{number:04d}.jpg"
    image_dirs: tuple[str, ...] = (".",)
    landmarks_file: str = "landmarks.txt"
    citation: str = ""
    expected: dict[str, int] = field(default_factory=dict)
    images: Mapping[str, tuple[str, ...]] | None = None
    pairs_format: str = "lfw"
    aligned: bool = False
    aligned_template: str | None = None
    identity_pattern: str = LFW_FILE_NAME
    source: str = ""

    @classmethod
    def from_toml(cls, path: Path) -> ProtocolDefinition:
        """Read a definition and check every value now: a mistake names the file and key here, not as a
        KeyError when a run first forms an image path."""
        raw = read_definition(path, _TOML_KEYS, ("name", "description"))
        if "images" in raw:
            if "path_pattern" in raw:
                raise DataError(f"{path}: give path_pattern or an images table, not both")
            if raw.get("pairs_format") == "name-label":
                raise DataError(f"{path}: an images table needs pairs_format \"lfw\" (name-label files name files)")
            raw["images"] = {name: tuple(paths) for name, paths in raw["images"].items()}
        if raw.get("pairs_format") == "name-label":
            raw.setdefault("path_pattern", "{name}")
            _check_path_pattern(path, raw["path_pattern"], required=("name",))
        elif "images" not in raw:
            _check_path_pattern(path, raw.get("path_pattern", cls.path_pattern))
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
        records = parse_name_label_pairs(pairs) if self.pairs_format == "name-label" else parse_lfw_pairs(pairs)
        root = self._image_root(data, pairs, records[0])
        pair_set = build_pair_set(root, pairs, records, self.layout, self.person_of)
        self._check_expected(pair_set)
        landmarks = pairs.parent / self.landmarks_file
        pair_set.landmarks = landmarks if landmarks.is_file() else None
        pair_set.aligned = self.aligned
        pair_set.aligned_template = self.aligned_template
        return pair_set

    def _check_expected(self, pair_set: PairSet) -> None:
        """A file with the official number of pairs must also have the official unique-image count."""
        want_pairs, want_images = self.expected.get("pairs"), self.expected.get("unique_images")
        if want_pairs == len(pair_set.same) and want_images and len(pair_set.images) != want_images:
            raise DataError(
                f"{pair_set.source}: {len(pair_set.same)} pairs as in official {self.name} but "
                f"{len(pair_set.images)} unique images instead of {want_images}; is the file modified?"
            )

    def person_of(self, name: str) -> str | None:
        """Whose image a pairs file's name is: the name itself in LFW's format (its names are people), the
        first group of ``identity_pattern`` in a name-label file (whose names are image files)."""
        if self.pairs_format != "name-label":
            return name
        match = re.fullmatch(self.identity_pattern, name)
        return match.group(1) if match else None

    @property
    def layout(self) -> str | Mapping[str, Sequence[str]]:
        """How ``name number`` becomes an image path: the images table if there is one, else the pattern."""
        return self.path_pattern if self.images is None else self.images

    def _image_root(self, data: Path, pairs: Path, first: PairRecord) -> Path:
        candidates = [data / d for d in self.image_dirs]
        probe = _image_path(self.layout, pairs, first, 0)
        for candidate in candidates:
            if (candidate / probe).is_file():
                return candidate
        tried = ", ".join(str(c) for c in candidates)
        made = pairs.parent / "protocol.toml"  # what lrbench pairs make writes beside its pairs file
        hint = f" (pairs from lrbench pairs make? pass --protocol {made})" if made.is_file() and not self.images else ""
        raise DataError(f"cannot find the images of {self.name}: {probe} is in none of {tried}{hint}")


def _text(value) -> bool:
    return isinstance(value, str)


def _nonempty_text(value) -> bool:
    return isinstance(value, str) and bool(value)


def _identity_pattern(value) -> bool:
    try:
        return _nonempty_text(value) and re.compile(value).groups >= 1
    except re.error:
        return False


def _folder_list(value) -> bool:
    return isinstance(value, list) and bool(value) and all(_nonempty_text(folder) for folder in value)


def _image_table(value) -> bool:
    return isinstance(value, dict) and all(
        _nonempty_text(name) and _folder_list(paths) for name, paths in value.items()
    )


def _counts(value) -> bool:
    return isinstance(value, dict) and all(
        key in ("pairs", "unique_images") and type(count) is int and count > 0 for key, count in value.items()
    )


# Each key of a protocol TOML: its check, and what it must hold as messages say it.
_TOML_KEYS = {
    "name": (_nonempty_text, "a non-empty string"),
    "description": (_text, "a string"),
    "pairs_file": (_nonempty_text, "a non-empty string"),
    "path_pattern": (_nonempty_text, "a non-empty string"),
    "image_dirs": (_folder_list, 'a non-empty list of folder names, e.g. [".", "lfw"]'),
    "landmarks_file": (_nonempty_text, "a non-empty string"),
    "citation": (_text, "a string"),
    "expected": (_counts, "a table of positive whole numbers, keys pairs and unique_images"),
    "images": (_image_table, 'a table of person name = non-empty list of image paths, e.g. Ann = ["Ann/1.jpg"]'),
    "pairs_format": (lambda value: value in ("lfw", "name-label"), '"lfw" or "name-label"'),
    "aligned": (lambda value: isinstance(value, bool), "true or false"),
    "aligned_template": (_nonempty_text, "a crop template's name, e.g. \"arcface-112x112\""),
    "identity_pattern": (_identity_pattern, "a regular expression whose first group is the person, e.g. "
                         "\"^(.+)_[0-9]+[.]jpg$\""),
}
_PLACEHOLDERS = ("name", "number")


def _check_path_pattern(path: Path, pattern: str, required: tuple[str, ...] = _PLACEHOLDERS) -> None:
    """Only ``{name}`` and ``{number}``, both present (without ``{number}`` every image of a person would be
    one file; a name-label file names files, so ``required`` is then ``{name}`` alone), with format specs that
    work for every name and number a pairs file can hold."""
    where = f"{path}: path_pattern {pattern!r}"
    try:
        fields = list(_format_fields(pattern))
    except ValueError as exc:
        raise DataError(f"{where}: {exc}") from None
    for field_name in fields:
        if field_name not in _PLACEHOLDERS:
            raise DataError(f"{where}: unknown placeholder {{{field_name}}}; use {{name}} and {{number}}")
    if set(fields) != set(required):
        wanted = " and ".join(f"{{{name}}}" for name in required)
        raise DataError(f"{where}: must use {'both ' if len(required) > 1 else 'only '}{wanted}")
    try:
        for number in (1, 10**18 - 1):  # the smallest and largest image numbers parse_lfw_pairs accepts
            pattern.format(name="Name", number=number)
    except (ValueError, TypeError, OverflowError) as exc:
        raise DataError(f"{where}: {exc}") from None


def _format_fields(pattern: str):
    """Every placeholder name in a format string, including those nested in format specs."""
    for _, field_name, spec, _ in string.Formatter().parse(pattern):
        if field_name is not None:
            yield field_name
            yield from _format_fields(spec)


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
    ``name1 i name2 j`` (different people). Fields are separated by tabs or spaces; a UTF-8 byte-order
    mark, CRLF line endings and blank lines at the end are accepted, a blank line anywhere else is not.
    """
    path = Path(path)
    lines = _body_lines(path)
    header = _fields(lines[0])
    if len(header) != 2 or not all(_COUNT.fullmatch(h) for h in header):
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
        fields = _fields(text)
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
        if not all(_COUNT.fullmatch(n) for n in raw_numbers):
            raise DataError(
                f"{path}:{line_no}: image numbers must be positive integers in the digits 0-9, got {raw_numbers}"
            )
        for name in names:
            _check_name(path, line_no, name)
        records.append(PairRecord(line_no, fold, names, tuple(int(n) for n in raw_numbers), same))
    return records


def _check_name(path: Path, line_no: int, name: str) -> None:
    if not _SAFE_NAME.match(name) or name in (".", ".."):
        raise DataError(f"{path}:{line_no}: name {name!r} would reach outside the data root")
    if not name.isprintable():
        raise DataError(f"{path}:{line_no}: name {name!r} holds a control or non-printing character")


def _body_lines(path: Path) -> list[str]:
    """A pairs file's lines, trailing blank lines dropped; empty files and inner blank lines refused."""
    lines = read_text_lines(path, "pairs file")
    while lines and not lines[-1].strip(_BLANKS):
        lines.pop()
    if not lines:
        raise DataError(f"{path}: empty pairs file")
    for line_no, text in enumerate(lines, start=1):
        if not text.strip(_BLANKS):
            raise DataError(f"{path}:{line_no}: blank line; a pairs file has none before its last pair")
    return lines


_LABEL = re.compile(r"[0-9]{1,18}", re.ASCII)


def parse_name_label_pairs(path: Path, folds: int = 10) -> list[PairRecord]:
    """Parse CALFW's / CPLFW's pairs file (``pairs_CALFW.txt``, ``pairs_CPLFW.txt``) strictly.

    Two lines per pair, each ``file label``; the label is 0 on both lines of a different-person pair and
    non-zero on both of a same-person pair (CALFW numbers its people there, CPLFW writes 1). All
    same-person pairs come first, then as many different-person pairs; fold k is the k-th tenth of each
    half (the reading of FaceX-Zoo's CALFW/CPLFW parsers). A file in another order is refused, naming the
    first pair out of place, rather than folded wrongly.
    """
    path = Path(path)
    lines = _body_lines(path)
    entries = []
    for line_no, text in enumerate(lines, start=1):
        fields = _fields(text)
        if len(fields) != 2:
            raise DataError(f"{path}:{line_no}: expected 'file label' (an image file and a whole number), "
                            f"got {len(fields)} fields")
        name, label = fields
        if not _LABEL.fullmatch(label):
            raise DataError(f"{path}:{line_no}: label must be a whole number (0: different people), got {label!r}")
        _check_name(path, line_no, name)
        entries.append((name, int(label)))
    if len(entries) % 2:
        raise DataError(f"{path}: {len(entries)} lines; this format has two lines per pair")
    pairs = len(entries) // 2
    half = pairs // 2
    per_fold = half // folds
    if pairs % 2 or half % folds or not per_fold:
        raise DataError(f"{path}: {pairs} pairs; this format needs {folds} folds × 2 × N pairs (all same-person "
                        "pairs, then as many different-person pairs)")
    records = []
    for index in range(pairs):
        (first, label), (second, other) = entries[2 * index], entries[2 * index + 1]
        line_no = 2 * index + 1
        if (label == 0) != (other == 0):
            raise DataError(f"{path}:{line_no + 1}: label {other} but {label} on line {line_no}: a pair's two lines "
                            "are both 0 (different people) or both non-zero (the same person)")
        same = label != 0
        if same != (index < half):
            kind = "different-person" if index < half else "same-person"
            raise DataError(f"{path}:{line_no}: a {kind} pair at pair {index + 1}; this format lists {half} "
                            f"same-person pairs, then {half} different-person pairs")
        records.append(PairRecord(line_no, (index % half) // per_fold, (first, second), (0, 0), same))
    return records


def _fields(line: str) -> list[str]:
    """Tab- or space-separated fields; other whitespace (no-break space, U+2028…) stays inside a field."""
    return re.split(r"[ \t]+", line.strip(_BLANKS))


def build_pair_set(
    root: Path, source: Path, records: list[PairRecord], pattern: str | Mapping[str, Sequence[str]],
    person_of: Callable[[str], str | None] | None = None,
) -> PairSet:
    """Map pairs to unique image paths, refusing any path that would leave the data root.

    ``pattern`` is a path pattern, or an images table (image ``name i`` is the i-th path of ``name``).
    Each image's person is ``person_of(name)`` (default: the name itself, as in LFW's pairs files, whose names
    are people); None refuses the line. An image given two people is refused.
    """
    person_of = person_of or str
    index: dict[str, int] = {}
    identities: list[str] = []
    first, second = [], []
    for record in records:
        ids = []
        for side, name in enumerate(record.names):
            rel = _image_path(pattern, source, record, side)
            normal = os.path.normpath(rel)
            if os.path.isabs(normal) or normal.split(os.sep)[0] == "..":
                raise DataError(f"{source}:{record.line}: name {name!r} would reach outside the data root: {rel}")
            person = person_of(name)
            if person is None:
                raise DataError(f"{source}:{record.line}: cannot tell whose image {name!r} is: the protocol's "
                                "identity_pattern does not match it")
            ids.append(index.setdefault(rel, len(index)))
            if ids[-1] == len(identities):
                identities.append(person)
            elif identities[ids[-1]] != person:
                raise DataError(f"{source}:{record.line}: image {rel} is {person!r} here but "
                                f"{identities[ids[-1]]!r} on an earlier line")
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
        identities=identities,
    )


def _image_path(pattern: str | Mapping[str, Sequence[str]], source: Path, record: PairRecord, side: int) -> str:
    """The relative path of one image of a pair; a number past the end of an images table names the line."""
    name, number = record.names[side], record.numbers[side]
    if isinstance(pattern, str):
        return pattern.format(name=name, number=number)
    paths = pattern.get(name, ())
    if number > len(paths):
        has = f"lists {len(paths)} images of {name}" if paths else f"has no person {name}"
        raise DataError(f"{source}:{record.line}: no image {name} {number}: the protocol's images table {has}")
    return paths[number - 1]
