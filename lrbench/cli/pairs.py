"""``lrbench pairs``: verification benchmarks (pairs, people split, protocol) from a folder of identities."""

import os
from pathlib import Path

import click

from ..data.pairmaker import (
    DEFAULT_PAIRS_PER_FOLD,
    check_options,
    identity_pattern,
    make_benchmark,
    pairs_text,
    people_text,
    protocol_text,
    scan_identities,
)
from ..errors import UsageError
from ..fileio import OutputLock, check_writable, write_all_atomic
from .common import command_line


@click.group()
def pairs():
    """Verification benchmarks from your own data."""


@pairs.command()
@click.argument("identity_folder", type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True,
              help="The pairs file to write (LFW View 2 format); put it in IDENTITY_FOLDER for `lrbench run`.")
@click.option("--folds", default=10, show_default=True, help="Identity-disjoint folds.")
@click.option("--pairs-per-fold", type=int,
              help=f"Same-person pairs per fold (and as many different-person pairs); default "
              f"{DEFAULT_PAIRS_PER_FOLD}, or the most every fold allows if that is fewer (said so).")
@click.option("--identity", metavar="REGEX",
              help="The person of each image from its file name: a regular expression whose one group is the "
              "person, searched in the name, e.g. '^(subject\\d+)\\.' for subject01.glasses (default: the "
              "sub-folder).")
@click.option("--seed", default=0, show_default=True, help="Random seed; the same seed gives the same files.")
@click.option("--people-out", type=click.Path(path_type=Path),
              help="The people split (LFW people.txt format); default: people.txt beside --out.")
@click.option("--protocol-out", type=click.Path(path_type=Path),
              help="The protocol definition for `lrbench run --protocol`; default: protocol.toml beside --out.")
@click.option("--landmarks", type=click.Path(path_type=Path),
              help="Use only the images this landmark file has landmarks for; default: landmarks.txt in "
              "IDENTITY_FOLDER if there is one (all images if not).")
@click.option("--overwrite", is_flag=True, help="Replace the output files if they exist.")
def make(identity_folder, out, folds, pairs_per_fold, identity, seed, people_out, protocol_out, landmarks, overwrite):
    """Write pairs, people split and protocol for a folder holding one sub-folder of images per person (or
    images whose file names say who they show: --identity).

    The pairs file is LFW View 2's format; image `NAME i` in it is the i-th of NAME's images (sorted) as
    listed in the protocol file, which `lrbench run --protocol` reads.
    """
    outputs = {"--out": out, "--people-out": people_out or out.with_name("people.txt"),
               "--protocol-out": protocol_out or out.with_name("protocol.toml")}
    _check_outputs(outputs, overwrite)
    check_options(folds, pairs_per_fold, seed)
    if identity is not None:
        identity_pattern(identity)
    if landmarks is None and (Path(identity_folder) / "landmarks.txt").is_file():
        landmarks = Path(identity_folder) / "landmarks.txt"
    elif landmarks is not None and not landmarks.is_file():
        raise UsageError(f"--landmarks {landmarks}: no such file")
    people = scan_identities(identity_folder, landmarks, identity)
    bench = make_benchmark(people, folds, pairs_per_fold, seed, where=str(identity_folder))
    if bench.capped:
        click.echo(f"--pairs-per-fold: {bench.capped}")
    name = Path(identity_folder).resolve().name or "identities"
    # Where lrbench run looks for the landmarks: relative to the pairs file's folder.
    landmarks_file = Path(os.path.relpath(landmarks.resolve(), out.resolve().parent)) if landmarks else None
    texts = {"--out": pairs_text(bench), "--people-out": people_text(bench),
             "--protocol-out": protocol_text(bench, name, out.name, seed,
                                             landmarks_file.as_posix() if landmarks_file else "landmarks.txt",
                                             identity)}
    with OutputLock(out, "--out", command=command_line()):
        write_all_atomic({path: texts[option] for option, path in outputs.items()})  # all three or none
    images = sum(len(p.images) for p in people)
    named = f" (named by --identity {identity!r})" if identity is not None else ""
    per_fold = bench.pairs_per_fold
    click.echo(f"{identity_folder}: {len(people)} persons{named}, {images} images → {folds} folds × ({per_fold} same "
               f"+ {per_fold} different) pairs over {bench.unique_images} images")
    click.echo(f"wrote {out}, {outputs['--people-out']}, {outputs['--protocol-out']}")
    data_parent = {Path(identity_folder).resolve(), Path(identity_folder).resolve().parent}
    pairs_option = "" if out.resolve().parent in data_parent else f" --pairs {out}"
    click.echo(f"evaluate: lrbench run --backbone NAME --data {identity_folder} "
               f"--protocol {outputs['--protocol-out']}{pairs_option} --df 1-13")


def _check_outputs(outputs: dict[str, Path], overwrite: bool) -> None:
    """Refuse, before any work, outputs that collide, cannot be written or exist without ``--overwrite``."""
    seen: dict[Path, str] = {}
    for option, path in outputs.items():
        check_writable(path, option, folder=False)
        other = seen.setdefault(path.resolve(), option)
        if other != option:
            raise UsageError(f"{option} {path}: the same file as {other}; choose another")
        if path.exists() and not overwrite:
            raise UsageError(f"{option} {path}: already exists; choose another file or pass --overwrite")
