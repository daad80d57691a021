"""``lrbench pairs make``: an LFW-style verification benchmark from any folder of identities.

An identity folder holds one sub-folder per person, or any folder whose file names say who is shown
(``--identity REGEX``: the regular expression's group, searched in each file name, is the person; the Yale
faces' ``subject01.glasses`` with ``'^(subject\\d+)\\.'``). From it come three files: an LFW View 2 pairs file
(identity-disjoint folds of N same-person and N different-person pairs), a people.txt-style split naming
each fold's people, and a protocol definition for ``lrbench run --protocol``. Arbitrary file names do not
follow LFW's ``{name}/{name}_{number:04d}.jpg``, so the definition carries an ``images`` table: image
``name i`` of the pairs file is the i-th of that person's images in sorted order. The table pins the
numbering, so images added to the folder later change nothing, and the run's manifest records its hash.

Pairs are spread fairly: each fold's same-person pairs are shared out evenly over its people (a person with
200 images gets no more than one with 5, unless the others run out of pairs), and its different-person
pairs evenly over pairs of people.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError, UsageError, brief_list
from ..progress import warn
from .detection import find_images
from .landmarks import read_landmarks

DEFAULT_PAIRS_PER_FOLD = 300  # LFW View 2's


@dataclass(frozen=True)
class Person:
    name: str
    images: tuple[str, ...]  # '/'-separated paths relative to the identity folder, sorted

    @property
    def same_pairs(self) -> int:
        """How many distinct same-person pairs this person's images make."""
        return math.comb(len(self.images), 2)


@dataclass(frozen=True)
class Benchmark:
    """Folds of people and, per fold, same pairs ``(name, i, j)`` and different pairs ``(name1, i, name2, j)``
    with 1-based image numbers into each person's sorted images."""

    folds: tuple[tuple[Person, ...], ...]
    same: tuple[tuple[tuple[str, int, int], ...], ...]
    different: tuple[tuple[tuple[str, int, str, int], ...], ...]
    capped: str = ""  # why there are fewer pairs per fold than the default, when the folder chose the number

    @property
    def pairs_per_fold(self) -> int:
        return len(self.same[0])

    @property
    def unique_images(self) -> int:
        """How many distinct images the pairs use (the protocol's ``expected.unique_images``)."""
        used = set()
        for same, different in zip(self.same, self.different):
            used |= {(name, i) for name, i, _ in same} | {(name, j) for name, _, j in same}
            used |= {(a, i) for a, i, _, _ in different} | {(b, j) for _, _, b, j in different}
        return len(used)


def scan_identities(folder: Path, landmarks: Path | None = None, identity: str | None = None) -> list[Person]:
    """The people of an identity folder: each sub-folder with at least one usable image is a person, or with
    ``identity`` (a regular expression with one group) the group it finds in each image's file name.

    Images are those ``lrbench landmarks`` detects (any depth, hidden files skipped). With a landmark file,
    only the images it gives landmarks are used, so ``lrbench run`` can align every image of every pair
    (images where no face was found are left out, with a warning). Paths holding whitespace, backslashes or
    non-printing characters cannot be written to lrbench's space-separated pairs and landmark files; they,
    and images outside any person's sub-folder, are left out with a warning rather than silently.
    """
    folder = Path(folder)
    pattern = identity_pattern(identity) if identity is not None else None
    if not folder.is_dir():
        raise UsageError(f"IDENTITY_FOLDER {folder}: not a folder")
    if not any(folder.iterdir()):
        raise DataError(f"{folder}: empty folder; expected one sub-folder of images per person, e.g. Ann/1.jpg")
    images = find_images(folder)
    usable = [rel for rel in images if rel.isprintable() and "\\" not in rel and not any(c.isspace() for c in rel)]
    if len(usable) < len(images):
        skipped = sorted(set(images) - set(usable))
        warn(f"{folder}: skipped {len(skipped)} images whose paths hold spaces, backslashes or non-printing "
             f"characters (lrbench's pairs and landmark files cannot name them; rename them): {brief_list(skipped)}")
    person_of = _named_by(folder, usable, pattern, identity) if pattern else _folder_person(folder, usable)
    usable = [rel for rel in usable if rel in person_of]
    if landmarks is not None:
        listed = set(read_landmarks(landmarks))
        # The same two spellings landmarks_for accepts: relative to the folder, or prefixed with its name.
        found = [rel for rel in usable if rel in listed or f"{folder.name}/{rel}" in listed]
        if not found:
            raise DataError(f"{landmarks}: no landmarks for any of the {len(usable)} images of {folder}")
        if len(found) < len(usable):
            missing = sorted(set(usable) - set(found))
            warn(f"{landmarks}: no landmarks for {len(missing)} of {len(usable)} images of {folder}; the pairs use "
                 f"the other {len(found)}: {brief_list(missing, 3)}")
        usable = found
    by_person: dict[str, list[str]] = {}
    for rel in usable:
        by_person.setdefault(person_of[rel], []).append(rel)
    return [Person(name, tuple(paths)) for name, paths in sorted(by_person.items())]


def identity_pattern(identity: str) -> re.Pattern:
    """``--identity``: a regular expression with exactly one group (the person)."""
    try:
        pattern = re.compile(identity)
    except re.error as exc:
        raise UsageError(f"--identity {identity!r}: not a regular expression ({exc})") from None
    if pattern.groups != 1:
        raise UsageError(f"--identity {identity!r}: needs exactly one group, the person in the file name, e.g. "
                         "'^(subject\\d+)\\.' for subject01.glasses")
    return pattern


def _folder_person(folder: Path, images: list[str]) -> dict[str, str]:
    """Each image's person: its first sub-folder; images lying directly in ``folder`` are left out (warned)."""
    loose = [rel for rel in images if "/" not in rel]
    if len(loose) == len(images):
        raise DataError(f"{folder}: no sub-folder holds images ({len(loose)} images lie directly in it); expected "
                        "one sub-folder of images per person, e.g. Ann/1.jpg, or the person in the file names "
                        "with --identity REGEX")
    if loose:
        warn(f"{folder}: left out {len(loose)} images outside any person's sub-folder: {brief_list(loose, 3)}")
    return {rel: rel.split("/", 1)[0] for rel in images if "/" in rel}


def _named_by(folder: Path, images: list[str], pattern: re.Pattern, identity: str) -> dict[str, str]:
    """Each image's person: the group ``pattern`` finds in its file name; images it names no one in are left out
    (warned)."""
    person_of, unmatched = {}, []
    for rel in images:
        found = pattern.search(rel.rsplit("/", 1)[-1])
        if found is None or not found[1]:
            unmatched.append(rel)
        else:  # a part of a usable file name: no whitespace, slashes or non-printing characters
            person_of[rel] = found[1]
    if not person_of:
        raise DataError(f"{folder}: --identity {identity!r} finds a person in none of the {len(images)} image file "
                        f"names (e.g. {images[0].rsplit('/', 1)[-1]!r})")
    if unmatched:
        warn(f"{folder}: left out {len(unmatched)} images whose file names --identity {identity!r} finds no person "
             f"in: {brief_list(unmatched, 3)}")
    return person_of


def make_benchmark(
    people: list[Person], folds: int, pairs_per_fold: int | None, seed: int, where: str = ""
) -> Benchmark:
    """Split ``people`` into identity-disjoint folds and draw ``pairs_per_fold`` same and different pairs in each.

    ``pairs_per_fold`` None takes LFW's 300, or the most every fold allows if that is fewer (and says why in
    ``capped``). Deterministic in ``seed``. Refuses, naming the option and the numbers, a count the people
    cannot supply, with the most every fold allows (and a number of folds that would allow it).
    ``where`` (the identity folder) starts the messages about the data.
    """
    check_options(folds, pairs_per_fold, seed)
    rng = np.random.default_rng(seed)
    _check_people(people, folds, where)
    split = _split(people, folds, rng)
    most, why = _capacity(split)
    wanted, capped = pairs_per_fold, ""
    if wanted is None:
        wanted = min(DEFAULT_PAIRS_PER_FOLD, most)
        if wanted < DEFAULT_PAIRS_PER_FOLD:
            capped = (f"{wanted} pairs per fold, fewer than the default {DEFAULT_PAIRS_PER_FOLD}: the most all "
                      f"{folds} folds allow ({why})")
    elif wanted > most:
        raise UsageError(
            f"--pairs-per-fold {wanted}: the most all {folds} folds allow is {most} ({why}); use --pairs-per-fold "
            f"{most} or fewer, or leave the option out to take the most{_fewer_folds(people, folds, wanted, seed)}"
        )
    same = tuple(_same_pairs(fold, wanted, rng) for fold in split)
    different = tuple(_different_pairs(fold, wanted, rng) for fold in split)
    return Benchmark(split, same, different, capped)


def check_options(folds: int, pairs_per_fold: int | None, seed: int) -> None:
    """The option values no folder could satisfy, refused before a folder is read."""
    if folds < 2:
        raise UsageError(f"--folds {folds}: must be at least 2 (each fold's threshold is chosen on the others)")
    if pairs_per_fold is not None and pairs_per_fold < 1:
        raise UsageError(f"--pairs-per-fold {pairs_per_fold}: must be at least 1")
    if seed < 0:
        raise UsageError(f"--seed {seed}: must be 0 or more")


def _most_folds(people: list[Person]) -> int:
    """How many folds the people can fill: each needs two people (a different pair), one with two images."""
    return min(len(people) // 2, sum(p.same_pairs > 0 for p in people))


def _check_people(people: list[Person], folds: int, where: str) -> None:
    """Every fold needs two people (a different pair) and one with two images (a same pair)."""
    pairable = sum(p.same_pairs > 0 for p in people)
    most = _most_folds(people)
    if most >= folds:
        return
    counts = f"{len(people)} identities, {pairable} of them with 2 or more images"
    if most < 2:
        raise DataError(f"{where}: {counts}; 2 folds need at least 4 identities, 2 of them with 2 or more images")
    raise UsageError(f"--folds {folds}: {where} has {counts}; each fold needs 2 identities, one with 2 or more "
                     f"images: use --folds {most} or fewer")


def _split(people: list[Person], folds: int, rng: np.random.Generator) -> tuple[tuple[Person, ...], ...]:
    """Identity-disjoint folds, random but stratified: people ranked by how many same pairs they make
    (random among equals) are dealt out a block of ``folds`` at a time, one to each fold in random order,
    so the folds get alike numbers of people and of pairable people."""
    order = rng.permutation(len(people))
    ranked = sorted(order, key=lambda k: -people[k].same_pairs)
    members: list[list[Person]] = [[] for _ in range(folds)]
    for start in range(0, len(ranked), folds):
        block = ranked[start : start + folds]
        for fold, k in zip(rng.permutation(folds), block):
            members[fold].append(people[k])
    return tuple(tuple(sorted(fold, key=lambda p: p.name)) for fold in members)


def _different_capacity(fold: tuple[Person, ...]) -> int:
    """Distinct different-person image pairs in a fold: sum over pairs of people of the image-count product."""
    counts = [len(p.images) for p in fold]
    return (sum(counts) ** 2 - sum(c * c for c in counts)) // 2


def _capacity(split: tuple[tuple[Person, ...], ...]) -> tuple[int, str]:
    """The most same-person and different-person pairs every fold can give (as many of each), and why: the fold
    and the kind of pairs that limit it."""
    same = [sum(p.same_pairs for p in fold) for fold in split]
    different = [_different_capacity(fold) for fold in split]
    fold = min(range(len(split)), key=lambda f: min(same[f], different[f]))
    kind, have = ("same-person", same[fold]) if same[fold] <= different[fold] else ("different-person", different[fold])
    people = split[fold]
    why = (f"fold {fold + 1} has {len(people)} identities, {sum(p.same_pairs > 0 for p in people)} with 2 or more "
           f"images, {sum(len(p.images) for p in people)} images: only {have} distinct {kind} pairs")
    return min(same[fold], different[fold]), why


def _fewer_folds(people: list[Person], folds: int, wanted: int, seed: int) -> str:
    """', or --folds K (which allows N)' for the most folds below ``folds`` that give ``wanted`` pairs each."""
    for fewer in range(min(folds - 1, _most_folds(people)), 1, -1):
        most, _ = _capacity(_split(people, fewer, np.random.default_rng(seed)))  # as make_benchmark would split
        if most >= wanted:
            return f", or --folds {fewer} (which allows {most})"
    return ""


def _water_fill(capacity: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """Shares of ``total`` as even as the capacities allow (each share ≤ its capacity, max-min fair); the
    remainder that cannot be split evenly goes to randomly chosen entries."""
    low, high = 0, int(capacity.max())
    while low < high:  # the highest level whose capped sum does not exceed total
        mid = (low + high + 1) // 2
        if np.minimum(capacity, mid).sum() <= total:
            low = mid
        else:
            high = mid - 1
    shares = np.minimum(capacity, low)
    rest = total - int(shares.sum())
    if rest:
        shares[rng.choice(np.flatnonzero(capacity > low), rest, replace=False)] += 1
    return shares


def _unrank_pair(rank: int) -> tuple[int, int]:
    """The ``rank``-th pair ``(i, j)``, ``i < j``, in the order (0,1), (0,2), (1,2), (0,3) …"""
    j = (1 + math.isqrt(1 + 8 * rank)) // 2
    return rank - j * (j - 1) // 2, j


def _draw(count: int, population: int, rng: np.random.Generator) -> list[int]:
    """``count`` distinct ranks below ``population`` (numpy draws them without listing the population)."""
    return [int(rank) for rank in rng.choice(population, count, replace=False)] if count else []


def _same_pairs(fold: tuple[Person, ...], wanted: int, rng: np.random.Generator) -> tuple[tuple[str, int, int], ...]:
    shares = _water_fill(np.array([p.same_pairs for p in fold], dtype=np.int64), wanted, rng)
    pairs = []
    for person, share in zip(fold, shares):
        for rank in _draw(int(share), person.same_pairs, rng):
            i, j = _unrank_pair(rank)
            pairs.append((person.name, i + 1, j + 1))
    return tuple(sorted(pairs))


def _different_pairs(
    fold: tuple[Person, ...], wanted: int, rng: np.random.Generator
) -> tuple[tuple[str, int, str, int], ...]:
    """One image pair for each of ``wanted`` random pairs of people when there are that many; else every
    pair of people, with the image pairs shared out over them as evenly as their image counts allow."""
    people_pairs = math.comb(len(fold), 2)
    if wanted <= people_pairs:
        couples = [_unrank_pair(rank) for rank in _draw(wanted, people_pairs, rng)]
        shares = np.ones(wanted, dtype=np.int64)
    else:
        couples = [_unrank_pair(rank) for rank in range(people_pairs)]
        sizes = np.array([len(fold[a].images) * len(fold[b].images) for a, b in couples], dtype=np.int64)
        shares = _water_fill(sizes, wanted, rng)
    pairs = []
    for (a, b), share in zip(couples, shares):
        first, second = fold[a], fold[b]
        for rank in _draw(int(share), len(first.images) * len(second.images), rng):
            i, j = divmod(rank, len(second.images))
            pairs.append((first.name, i + 1, second.name, j + 1))
    return tuple(sorted(pairs))


def pairs_text(bench: Benchmark) -> str:
    """The LFW View 2 pairs file: ``folds<TAB>n``, then per fold n same and n different pairs."""
    lines = [f"{len(bench.folds)}\t{bench.pairs_per_fold}"]
    for same, different in zip(bench.same, bench.different):
        lines += ["\t".join(map(str, pair)) for pair in same]
        lines += ["\t".join(map(str, pair)) for pair in different]
    return "\n".join(lines) + "\n"


def people_text(bench: Benchmark) -> str:
    """The LFW people.txt split: the number of folds, then per fold its size and ``name<TAB>images`` lines."""
    lines = [str(len(bench.folds))]
    for fold in bench.folds:
        lines.append(str(len(fold)))
        lines += [f"{person.name}\t{len(person.images)}" for person in fold]
    return "\n".join(lines) + "\n"


def protocol_text(
    bench: Benchmark, name: str, pairs_file: str, seed: int, landmarks_file: str, identity: str | None = None
) -> str:
    """A protocol definition whose ``images`` table numbers each person's images as the pairs file does; its
    description says where the people came from (sub-folders, or the ``identity`` rule on file names)."""
    per_fold = bench.pairs_per_fold
    origin = "each sub-folder a person" if identity is None else f"the person from the file name by {identity!r}"
    description = (f"{name}: {len(bench.folds)} identity-disjoint folds of {per_fold} same + {per_fold} different "
                   f"pairs (lrbench pairs make, seed {seed}, {origin})")
    lines = [
        "# Written by lrbench pairs make: the benchmark of an identity folder, for lrbench run --protocol.",
        f"# People: {origin}.",
        f"name = {_toml_string(name)}",
        f"description = {_toml_string(description)}",
        f"pairs_file = {_toml_string(pairs_file)}",
        'image_dirs = ["."]',
        f"landmarks_file = {_toml_string(landmarks_file)}",
        "",
        "[expected]",
        f"pairs = {2 * per_fold * len(bench.folds)}",
        f"unique_images = {bench.unique_images}",
        "",
        "# Image `name i` of the pairs file is the i-th path of name's list, relative to the --data folder.",
        "[images]",
    ]
    people = sorted((p for fold in bench.folds for p in fold), key=lambda p: p.name)
    lines += [f"{_toml_string(p.name)} = [{', '.join(_toml_string(rel) for rel in p.images)}]" for p in people]
    return "\n".join(lines) + "\n"


def _toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped, everything else as is."""
    escaped = []
    for char in text:
        if char in '"\\':
            escaped.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'
