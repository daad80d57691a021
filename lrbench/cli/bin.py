"""``lrbench bin``: insightface .bin verification sets written from a protocol's pairs."""

import pickle
from functools import partial
from pathlib import Path

import click

from ..data.binsets import FOLDS, bin_payload, check_bin_target, check_fold_order, encode
from ..data.crops import default_cache_dir, load_crops
from ..data.detection import missing_landmarks_message
from ..data.landmarks import landmarks_for
from ..data.protocols import load_protocol
from ..errors import UsageError
from ..fileio import OutputLock, check_writable, write_atomic
from ..progress import progress_bar
from ..specs import ARCFACE_112x112
from .common import command_line


@click.group("bin")
def bin_group():
    """insightface .bin verification sets."""


@bin_group.command()
@click.option("--protocol", "-p", default="lfw-view2", show_default=True,
              help="Registered protocol, or a protocol .toml file.")
@click.option("--data", type=click.Path(path_type=Path), required=True,
              help="Folder holding the images (or their parent, with pairs.txt).")
@click.option("--pairs", type=click.Path(path_type=Path), help="Pairs file; default: the protocol's.")
@click.option("--landmarks", type=click.Path(path_type=Path),
              help="5-point landmark file; default: landmarks.txt beside the pairs file.")
@click.option("--aligned", is_flag=True, help="Images are already aligned crops: resize to 112×112 only.")
@click.option("--format", "image_format", type=click.Choice(["png", "jpeg"]), default="png", show_default=True,
              help="How images are stored: png is lossless; jpeg (as insightface's own) about 3× smaller.")
@click.option("--quality", default=95, show_default=True, type=click.IntRange(1, 100), help="JPEG quality.")
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="The .bin file to write.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1),
              help="Threads decoding and aligning images.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
def make(protocol, data, pairs, landmarks, aligned, image_format, quality, out, overwrite, workers, quiet):
    """Write a protocol's pairs as an insightface .bin: aligned 112×112 ArcFace crops, pairs in fold order."""
    check_writable(out, "--out", folder=False)
    check_bin_target(out, overwrite)
    if aligned and landmarks:
        raise UsageError(f"--landmarks {landmarks}: not with --aligned (aligned crops need no landmarks)")
    spec, _ = load_protocol(protocol)
    if spec.kind != "verification":
        raise UsageError(f"--protocol {protocol}: an {spec.kind} protocol; a .bin holds verification pairs")
    pair_set = spec.load(Path(data), pairs)
    points = None
    if not (aligned or pair_set.aligned):
        landmarks_file = Path(landmarks) if landmarks else pair_set.landmarks
        if landmarks_file is None:
            raise UsageError(missing_landmarks_message(pair_set.root, Path(pair_set.source).parent / "landmarks.txt"))
        if not landmarks_file.is_file():
            raise UsageError(f"--landmarks {landmarks_file}: no such file")
        points = landmarks_for(pair_set.images, landmarks_file, pair_set.root)
    check_fold_order(pair_set, spec.name, out)
    crops, _ = load_crops(pair_set.root, pair_set.images, ARCFACE_112x112, points, workers=workers,
                          cache_dir=default_cache_dir(), show_progress=not quiet)
    encoded = []
    with progress_bar(f"encode {image_format}", len(crops), not quiet) as steps:
        for crop in crops:
            encoded.append(encode(crop, image_format, quality))
            steps.advance()
    with OutputLock(out, "--out", command=command_line()):
        # protocol 4: what every Python 3 reads, and no out-of-band buffers
        write_atomic(out, partial(pickle.dump, bin_payload(pair_set, encoded), protocol=4))
    click.echo(f"wrote {out}: {len(pair_set.same)} pairs ({int(pair_set.same.sum())} same) of {len(crops)} "
               f"{image_format.upper()} crops 112×112, {FOLDS} folds in file order")
