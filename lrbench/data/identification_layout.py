"""Identification protocols declared in TOML as folder layouts: gallery, probe and distractor folders, with
each image's identity parsed from its file name (TinyFace, SCface and your own data)."""

from __future__ import annotations

import posixpath
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError, UsageError, brief_list
from ..fileio import image_files
from ..progress import warn
from ..specs import IdentificationSet, ProtocolSpec
from .pairs import read_definition

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib



def is_identification_toml(path: Path) -> bool:
    """Whether a protocol TOML declares ``kind = "identification"`` (the pairs definitions have no kind)."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8")).get("kind") == "identification"
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False  # the pairs reader reports what is wrong with it


def _regex(value) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return re.compile(value).groups == 1
    except re.error:
        return False


def _text(value) -> bool:
    return isinstance(value, str) and bool(value)


_KEYS = {
    "kind": (lambda v: v == "identification", '"identification"'),
    "name": (_text, "non-empty text"),
    "description": (_text, "non-empty text"),
    "citation": (lambda v: isinstance(v, str), "text"),
    "image_dirs": (lambda v: isinstance(v, list) and bool(v) and all(map(_text, v)), "a list of folders"),
    "gallery": (_text, "a folder"),
    "probes": (_text, "a folder"),
    "distractors": (_text, "a folder"),
    "non_mated": (_text, "a folder"),
    "identity": (_regex, "a regular expression with one group (the identity in the file name)"),
    "gallery_identity": (_regex, "a regular expression with one group"),
    "probe_identity": (_regex, "a regular expression with one group"),
    "probe_group": (_regex, "a regular expression with one group (the group in the file name)"),
    "group_names": (lambda v: isinstance(v, dict) and all(map(_text, v.values())), "a table of group → name"),
    "unique_gallery_ids": (lambda v: isinstance(v, bool), "true or false"),
    "leave_one_out": (lambda v: isinstance(v, bool), "true or false"),
    "generated_distractors": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                              "a number of distractors (0 or more)"),
    "landmarks_file": (_text, "a file name"),
    "aligned": (lambda v: isinstance(v, bool), "true or false"),
}


@dataclass(frozen=True)
class IdentificationLayout:
    """Folders under an image root; ``identity`` (or ``gallery_identity``/``probe_identity``) finds the
    identity in a file name, ``probe_group`` a probe's group (``group_names`` spells it out)."""

    name: str
    description: str
    gallery: str
    probes: str
    identity: str = r"^([^_]+)_"
    citation: str = ""
    image_dirs: tuple[str, ...] = (".",)
    distractors: str | None = None
    non_mated: str | None = None
    gallery_identity: str | None = None
    probe_identity: str | None = None
    probe_group: str | None = None
    group_names: dict[str, str] = field(default_factory=dict)
    unique_gallery_ids: bool = True
    leave_one_out: bool = False  # probes that are gallery images too are searched without their own entry
    generated_distractors: int = 0  # further distractors drawn at the feature level: a scale test
    landmarks_file: str = "landmarks.txt"
    aligned: bool = False  # the images are aligned crops already (no landmarks needed)
    source: str = ""

    @classmethod
    def from_toml(cls, path: Path) -> IdentificationLayout:
        """Read and check every value now, so a mistake names the file and key before any work starts."""
        raw = read_definition(path, _KEYS, ("name", "description", "gallery", "probes"))
        raw.pop("kind", None)
        raw["image_dirs"] = tuple(raw.get("image_dirs", (".",)))
        return cls(**raw, source=str(path))

    def spec(self) -> ProtocolSpec:
        return ProtocolSpec(self.name, self.load, self.description, self.citation, kind="identification")

    def load(self, data: Path, pairs: Path | None = None) -> IdentificationSet:
        """List the folders under the first image root holding the gallery folder; parse identities."""
        if pairs is not None:
            raise UsageError(f"--pairs {pairs}: identification protocol {self.name} lists its folders, not pairs")
        data = Path(data)
        if not data.is_dir():
            raise UsageError(f"--data {data}: not a directory")
        roots = [data / d for d in self.image_dirs]
        root = next((r for r in roots if (r / self.gallery).is_dir()), None)
        if root is None:
            tried = ", ".join(str(r / self.gallery) for r in roots)
            raise DataError(f"cannot find the gallery of {self.name}: none of {tried} is a folder")
        images: list[str] = []
        gallery, gallery_ids = self._folder(root, self.gallery, self.gallery_identity or self.identity, images)
        probes, probe_ids = self._folder(root, self.probes, self.probe_identity or self.identity, images)
        distractors = self._folder(root, self.distractors, None, images)[0] if self.distractors else None
        non_mated = self._folder(root, self.non_mated, None, images)[0] if self.non_mated else None
        groups = None
        if self.probe_group:
            groups = [self._group(images[i]) for i in probes]
        landmarks = next((f / self.landmarks_file for f in (root, data) if (f / self.landmarks_file).is_file()), None)
        ident = IdentificationSet(root, images, gallery, gallery_ids, probes, probe_ids, root / self.gallery,
                                  distractors, non_mated, groups, landmarks, self.aligned,
                                  leave_one_out=self.leave_one_out, generated_distractors=self.generated_distractors)
        check_set(ident, self.unique_gallery_ids)
        return ident

    def _folder(self, root: Path, folder: str, pattern: str | None, images: list[str]) -> tuple[np.ndarray, list]:
        """Append the folder's images (sorted, recursive) to ``images``; their indices and identities."""
        where = root / folder
        if not where.is_dir():
            raise DataError(f"{where}: no such folder ({folder!r} of protocol {self.name})")
        files = [where / rel for rel in image_files(where)]
        if not files:
            raise DataError(f"{where}: no images ({folder!r} of protocol {self.name})")
        ids = []
        if pattern is not None:
            parser = re.compile(pattern)
            for path in files:
                found = parser.search(path.name)
                if found is None:
                    raise DataError(
                        f"{path}: the identity pattern {pattern!r} of {self.source or self.name} matches "
                        "nothing in this file name"
                    )
                ids.append(found.group(1))
        start = len(images)
        images.extend(p.relative_to(root).as_posix() for p in files)
        return np.arange(start, len(images)), ids

    def _group(self, image: str) -> str:
        found = re.search(self.probe_group, Path(image).name)
        if found is None:
            raise DataError(f"{image}: the probe_group pattern {self.probe_group!r} of {self.name} matches nothing")
        return self.group_names.get(found.group(1), found.group(1))


def identification_counts(ident: IdentificationSet) -> dict[str, int]:
    """How many gallery entries, distractors, mated and non-mated probes a set has, for the manifest."""
    return {
        "gallery": len(ident.gallery),
        "gallery_identities": len(set(ident.gallery_ids)),
        "distractors": len(entry_indices(ident.distractors)),
        "generated_distractors": ident.generated_distractors,
        "probes": len(ident.probes),
        "non_mated_probes": len(entry_indices(ident.non_mated)),
    }


def check_set(ident: IdentificationSet, unique_gallery_ids: bool = False) -> None:
    """Refuse what makes the numbers meaningless (nothing to search in or for, an image enrolled twice, a probe
    searched among its own image unless the protocol leaves it out); warn about probes that have no mate,
    which count as misses."""
    gallery = np.asarray(ident.gallery, dtype=np.int64)
    if not len(gallery):
        raise DataError(f"{ident.source}: the gallery is empty")
    if not len(ident.probes):
        raise DataError(f"{ident.source}: there are no probes")
    if len(ident.gallery_ids) != len(gallery) or len(ident.probe_ids) != len(ident.probes):
        raise DataError(f"{ident.source}: one identity per gallery entry and per probe is needed")
    enrolled = [image_key(ident, i) for i in np.concatenate([gallery, entry_indices(ident.distractors)])]
    if len(set(enrolled)) < len(enrolled):
        twice = next(image for image, count in Counter(enrolled).items() if count > 1)
        raise DataError(f"{ident.source}: gallery image {twice} is enrolled twice")
    overlap = sorted({image_key(ident, i) for i in ident.probes} & set(enrolled)
                     | {image_key(ident, i) for i in entry_indices(ident.non_mated)} & set(enrolled[: len(gallery)]))
    if ident.generated_distractors and len(enrolled) < 2:
        raise DataError(f"{ident.source}: generated distractors are drawn from the spread of the real gallery images' "
                        f"features, which needs at least 2 of them, not {len(enrolled)}")
    if overlap and not ident.leave_one_out:
        raise DataError(
            f"{ident.source}: {len(overlap)} probe images are also gallery images ({brief_list(overlap)}); a probe "
            "searched among its own image is found at rank 1 whatever the model. Keep probes and gallery apart, "
            "or declare leave_one_out = true to search each probe without its own entry"
        )
    if unique_gallery_ids:
        seen: dict[str, int] = {}
        for index, identity in zip(gallery, ident.gallery_ids):
            if identity in seen:
                raise DataError(
                    f"{ident.source}: duplicate gallery id {identity!r} ({ident.images[seen[identity]]} and "
                    f"{ident.images[index]}); this protocol enrols one image per identity"
                )
            seen[identity] = index
    if ident.probe_groups is not None and len(ident.probe_groups) != len(ident.probes):
        raise DataError(f"{ident.source}: one group per probe is needed")
    absent = len(set(ident.probe_ids) - set(ident.gallery_ids))
    if absent:
        warn(f"{ident.source}: {absent} probe identities have no gallery entry; their probes count as misses")


def entry_indices(value) -> np.ndarray:
    return np.zeros(0, dtype=np.int64) if value is None else np.asarray(value, dtype=np.int64)


def image_key(ident: IdentificationSet, index: int) -> str:
    """An image's path as a comparable name (``a/./b.jpg`` and ``a/b.jpg`` are one image)."""
    return posixpath.normpath(ident.images[index])
