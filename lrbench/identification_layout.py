"""Identification protocols declared in TOML as folder layouts: gallery, probe and distractor folders, with
each image's identity parsed from its file name (TinyFace, SCface and your own data)."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DataError, UsageError
from .fileio import image_files
from .identification import check_set
from .pairs import read_definition
from .specs import IdentificationSet, ProtocolSpec

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
