"""A trainer's collected option values turned into a run: its configuration (``resolve_config``: a new run takes
them as given; ``--resume DIR`` takes the run's stored configuration, refusing options that would change the
computation), the loop's settings, and the training data (``training_data`` refuses data that changed since
the run started).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
import numpy as np

from ..data.crops import default_cache_dir, images_digest
from ..data.degrade import parse_dfs
from ..data.detection import detected_landmarks, load_detector, missing_landmarks_message
from ..data.recordio import PackCrops, RecordNames, RecordPack, find_pack
from ..errors import DataError, UsageError
from ..eval import distributed
from ..progress import stderr_console, warn
from ..specs import CropTemplate
from .checkpoint import LAST, MODEL, SUMMARY, load_checkpoint
from .data import ALIGN_THREADS, FaceFolder, aligned_crops, data_digest, pack_digest, read_people, scan_folder
from .options import RUNTIME
from .settings import LoopSettings, Validation


def _plain(values: dict) -> dict:
    """JSON-compatible copy (paths as strings, tuples as lists), as the checkpoint stores it."""
    return json.loads(json.dumps(values, default=str))


def resolve_config(ctx: click.Context, trainer: str, params: dict) -> tuple[dict, dict | None]:
    """The run's configuration and, with ``--resume``, the checkpoint to continue from."""
    config = _plain(params)
    if not config["resume"]:
        if not config["out"]:
            raise UsageError("--out DIR is required (or --resume DIR to continue a run)")
        if (Path(config["out"]) / LAST).exists():
            raise UsageError(
                f"--out {config['out']}: holds a training run; continue it with --resume {config['out']} or choose "
                "another folder"
            )
        return config, None
    folder = Path(config["resume"])
    if config["out"] and Path(config["out"]).resolve() != folder.resolve():
        raise UsageError(f"--out {config['out']}: a resumed run stays in its folder ({folder})")
    if not (folder / LAST).is_file():
        raise UsageError(f"--resume {folder}: no {LAST} there to continue from")
    state = load_checkpoint(folder / LAST)
    if state["trainer"] != trainer:
        raise UsageError(f"--resume {folder}: that is a {state['trainer']!r} run, not {trainer!r}")
    stored = state["config"]
    given = {
        name: value
        for name, value in config.items()
        if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE
    }
    for name, value in given.items():
        if name not in RUNTIME and value != stored.get(name):
            raise UsageError(
                f"--{name.replace('_', '-')} {value}: the run in {folder} uses {stored.get(name)}; a resumed run keeps "
                "its settings (only where and how fast it runs, and what it validates, may change)"
            )
    if state["step"] >= state["total"] and (folder / SUMMARY).is_file():
        click.echo(
            f"--resume {folder}: the run finished at step {state['step']}; nothing to do (its model: "
            f"{folder / MODEL})",
            err=True,
        )
        ctx.exit(0)
    # An option added since the run started is absent from its stored configuration: it takes its default here,
    # which for every option is what runs made before it did.
    resumed = {**config, **stored, **{name: value for name, value in given.items() if name in RUNTIME}}
    resumed.update(out=str(folder), resume=str(folder))
    return resumed, state


def interactive() -> bool:
    """Progress bars when a person watches stderr and only one process writes to it."""
    return sys.stderr.isatty() and int(os.environ.get("WORLD_SIZE", "1")) == 1


def loop_settings(config: dict) -> LoopSettings:
    """The loop's settings from a trainer's configuration."""
    validation = None
    if config["val"]:
        is_bin = config["val"].endswith(".bin")  # insightface's verification sets hold their images
        if not config["val_data"] and not is_bin:
            raise UsageError(f"--val {config['val']}: needs --val-data (the protocol's data folder)")
        if is_bin and not config["val_data"] and not Path(config["val"]).is_file():
            raise UsageError(f"--val {config['val']}: no such file")
        validation = Validation(
            protocol=config["val"],
            data=_path(config["val_data"]),
            dfs=config["val_df"],
            every=config["val_every"],
            pairs=_path(config["val_pairs"]),
            landmarks=_path(config["val_landmarks"]),
            aligned=config["val_aligned"],
            degradation=config.get("degradation", "bicubic"),  # a trainer without degradation_options: lrbench run's
            degradation_options=tuple(config.get("degradation_option", ())),
            cache_dir=_cache_dir(config),
        )
    try:
        milestones = tuple(float(part) for part in str(config["milestones"]).split(","))
    except ValueError:
        raise UsageError(f"--milestones {config['milestones']}: expected fractions like 0.6,0.85") from None
    return LoopSettings(
        out=Path(config["out"]),
        device=config["device"],
        steps=config["steps"],
        epochs=config["epochs"],
        batch_size=config["batch_size"],
        optimizer=config["optimizer"],
        lr=config["lr"],
        weight_decay=config["weight_decay"],
        momentum=config["momentum"],
        schedule=config["schedule"],
        warmup_steps=config["warmup_steps"],
        milestones=milestones,
        clip_grad=config["clip_grad"],
        precision=config["precision"],
        seed=config["seed"],
        workers=config["workers"],
        checkpoint_every=config["checkpoint_every"],
        log_every=config["log_every"],
        val=validation,
        show_progress=interactive(),
    )


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def dfs_option(text: str, template: CropTemplate, flag: str) -> list[int]:
    """DFs as ``--df`` parses them, errors naming the trainer's own option."""
    return parse_dfs(text, template.size, flag)


def _cache_dir(config: dict) -> Path | None:
    """The crop cache of ``--cache-dir``/``--no-cache`` (None: no cache)."""
    return None if config["no_cache"] else _path(config["cache_dir"]) or default_cache_dir()


def training_data(
    config: dict, templates: dict[str, CropTemplate], ranks: distributed.Ranks
) -> tuple[FaceFolder, dict[str, np.ndarray]]:
    """The folder's images and their crops for each named template (rank 0 aligns first, the others read
    its cache).

    The data's identity goes into ``config`` (``data_digest``, stored in every checkpoint); a resumed run
    whose images or landmark file differ from that record is refused, as changed options are.
    """
    if not config["data"]:
        raise UsageError("--data DIR is required: the training images")
    pack = find_pack(Path(config["data"]))
    if pack is not None:
        return _pack_data(config, pack, templates, ranks)
    people = read_people(Path(config["people"]), config["people_folds"]) if config["people"] else None
    if config["people_folds"] and not config["people"]:
        raise UsageError("--people-folds needs --people (a people.txt)")
    folder = scan_folder(Path(config["data"]), people)
    cache_dir = _cache_dir(config)
    landmarks = _landmark_file(config, folder, cache_dir, ranks)
    images_sha256 = images_digest(folder.root, folder.images, ALIGN_THREADS)
    check_data_unchanged(config, data_digest(images_sha256, landmarks), folder.root, landmarks)
    crops = {}
    with distributed.main_first(ranks):
        for name, template in templates.items():
            crops[name] = aligned_crops(
                folder, template, landmarks, workers=ALIGN_THREADS, cache_dir=cache_dir, show_progress=interactive(),
                images_sha256=images_sha256,
            )
    return folder, crops


def _pack_data(
    config: dict, path: Path, templates: dict[str, CropTemplate], ranks: distributed.Ranks
) -> tuple[FaceFolder, dict[str, PackCrops]]:
    """An insightface pack: its images are aligned 112×112 ArcFace crops, converted to each template as decoded."""
    for option in ("landmarks", "detector", "people", "people_folds"):
        if config.get(option):
            raise UsageError(f"--{option.replace('_', '-')}: not with --data {path}, an insightface pack of aligned "
                             "crops and numbered identities")
    pack = RecordPack(path)
    check_data_unchanged(config, pack_digest(pack), pack.path, None)
    crops = {name: PackCrops(pack, template) for name, template in templates.items()}
    source = {**pack.describe(), "crops": {name: found.conversion.describe() for name, found in crops.items()}}
    folder = FaceFolder(path, RecordNames(pack.images), pack.labels, [str(k) for k in range(pack.identities)], source)
    if ranks.main:
        conversions = "; ".join(
            f"{name} crops: {found.conversion.describe()['method']} to {found.template.name}"
            for name, found in crops.items()
        )
        stderr_console.print(f"training data: {path}: {len(pack.images):,} images of {pack.identities:,} identities "
                             f"(insightface pack); {conversions}", highlight=False, soft_wrap=True)
    return folder, crops


def check_data_unchanged(config: dict, digest: dict[str, str | None], root: Path, landmarks: Path | None) -> None:
    """Record the data's digest in a new run's configuration; refuse a resumed run's data that differs.

    A record by file dates (an earlier lrbench) cannot tell a copy from an edit: its images are not checked (said once),
    its landmark file still is, and the record becomes the content digest for any later resume."""
    recorded = config.setdefault("data_digest", digest)
    if recorded.get("basis") != digest["basis"]:
        warn(f"{root}: the run in {config['out']} recorded its images by their file dates (an earlier lrbench), "
             "which a copy changes; they cannot be checked against it, so it continues on the images as they are now")
        recorded = config["data_digest"] = {**recorded, "basis": digest["basis"], "images": digest["images"]}
    for key, source in (("images", root), ("landmarks", landmarks)):
        if recorded.get(key) != digest[key]:
            raise DataError(
                f"{source}: changed since the run in {config['out']} started (its checkpoint records other "
                f"{key}); resuming would not continue the same run, so start a new one"
            )


def _landmark_file(config: dict, folder: FaceFolder, cache_dir: Path | None, ranks: distributed.Ranks) -> Path | None:
    """``--landmarks``, else with ``--detector`` the detections' file (made once, by the main process, cached),
    else landmarks.txt in the folder or its parent."""
    detector = config["detector"]
    if detector and (config["aligned"] or config["landmarks"]):
        other = "--aligned (aligned crops need no landmarks)" if config["aligned"] else "--landmarks (it gives them)"
        raise UsageError(f"--detector {detector}: not with {other}")
    if config["aligned"]:
        return None
    if detector:
        found = load_detector(detector, _path(config["detector_weights"]), ranks.device, config["detector_options"])
        with distributed.main_first(ranks):  # the main process detects, the others read its cache entry
            entry, _ = detected_landmarks(folder.root, folder.images, found, cache_dir=cache_dir,
                                          workers=ALIGN_THREADS, show_progress=interactive())
        return entry
    landmarks = _path(config["landmarks"]) or _find_landmarks(folder.root)
    if not landmarks.is_file():
        raise UsageError(f"--landmarks {landmarks}: no such file")
    return landmarks


def _find_landmarks(root: Path) -> Path:
    for candidate in (root / "landmarks.txt", root.parent / "landmarks.txt"):
        if candidate.is_file():
            return candidate
    raise UsageError(missing_landmarks_message(root, root / "landmarks.txt"))
