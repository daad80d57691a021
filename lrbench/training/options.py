"""The command-line options every trainer shares, and which of them a resumed run may change.

A trainer plugin stacks ``loop_options``, ``data_options`` (and ``degradation_options`` if it degrades
images) on its click command and adds its own; ``config.resolve_config`` turns the collected values into the
run's configuration. Declaring the options needs no torch, so ``lrbench list trainers`` and ``lrbench train
--help`` start in a fraction of a second.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..options import stack_options
from .settings import OPTIMIZERS, SCHEDULES

# Options a resumed run may change: they decide where and how fast it runs, or what is validated, not
# what the weights become.
RUNTIME = frozenset(
    {
        "out",
        "resume",
        "device",
        "workers",
        "checkpoint_every",
        "log_every",
        "cache_dir",
        "no_cache",
        "val",
        "val_data",
        "val_pairs",
        "val_landmarks",
        "val_df",
        "val_every",
    }
)


def loop_options(lr: float):
    """Output, resume, device, length, optimizer, schedule, precision, seed, checkpoints and validation."""
    path = click.Path(path_type=Path)
    return stack_options(
        click.option("--out", "-o", type=path, help="Run folder: last.pt, best.pt, model.pt, log.jsonl, summary.json."),
        click.option(
            "--resume",
            type=path,
            metavar="DIR",
            help="Continue the run in DIR exactly where its last.pt left off (its settings are kept).",
        ),
        click.option("--device", default="auto", show_default=True, help="cpu, cuda (auto: cuda if present)."),
        click.option("--steps", type=int, help="Optimizer steps in all (default: --epochs passes over the data)."),
        click.option("--epochs", type=int, default=10, show_default=True),
        click.option(
            "--batch-size",
            type=int,
            default=256,
            show_default=True,
            help="Global batch: torchrun's processes share it.",
        ),
        click.option("--optimizer", type=click.Choice(OPTIMIZERS), default="adamw", show_default=True),
        click.option("--lr", type=float, default=lr, show_default=True, help="Peak learning rate."),
        click.option(
            "--weight-decay",
            type=float,
            default=5e-4,
            show_default=True,
            help="On weights and filters (not biases or PReLU slopes).",
        ),
        click.option("--momentum", type=float, default=0.9, show_default=True, help="SGD momentum."),
        click.option("--schedule", type=click.Choice(SCHEDULES), default="cosine", show_default=True),
        click.option(
            "--milestones",
            default="0.6,0.85",
            show_default=True,
            help="Step schedule: ×0.1 at these fractions of the run.",
        ),
        click.option("--warmup-steps", type=int, default=0, show_default=True, help="Linear warm-up."),
        click.option("--clip-grad", type=float, help="Clip the gradient norm to this value."),
        click.option(
            "--precision",
            type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
            default="auto",
            show_default=True,
            help="Mixed precision (auto: bf16 on CUDA, fp32 on CPU).",
        ),
        click.option(
            "--seed", type=int, default=0, show_default=True, help="Seeds initialisation, data order and augmentation."
        ),
        click.option(
            "--workers",
            type=int,
            default=0,
            show_default=True,
            help="DataLoader worker processes (0: gather batches in the training process, which is fastest "
            "for crops held in memory).",
        ),
        click.option(
            "--checkpoint-every",
            type=int,
            default=500,
            show_default=True,
            help="Write last.pt every N steps (also at the end and on Ctrl-C).",
        ),
        click.option("--log-every", type=int, default=50, show_default=True),
        click.option(
            "--val",
            metavar="PROTOCOL",
            help="Validate on this protocol (e.g. lfw-view2, a .toml, or an insightface .bin such as the lfw.bin "
            "shipped with every training pack).",
        ),
        click.option("--val-data", type=path, help="The validation protocol's data folder (not needed for a .bin)."),
        click.option("--val-pairs", type=path, help="Its pairs file (default: the protocol's)."),
        click.option("--val-landmarks", type=path, help="Its landmark file (default: the protocol's)."),
        click.option("--val-aligned", is_flag=True, help="Validation images are already aligned crops."),
        click.option(
            "--val-df",
            default="1",
            show_default=True,
            help="DFs to validate at; best.pt maximises their mean accuracy.",
        ),
        click.option("--val-every", type=int, help="Validate every N steps (default: --checkpoint-every)."),
    )


def data_options(function):
    """The training images: a folder (identity sub-folders give labels), landmarks or pre-aligned crops."""
    path = click.Path(path_type=Path)
    return stack_options(
        click.option(
            "--data",
            type=path,
            help="Image folder: identity sub-folders (CASIA-WebFace layout) or any folder of faces; or an insightface "
            "RecordIO pack (DIR/train.rec with train.idx beside it, or DIR holding them).",
        ),
        click.option(
            "--landmarks", type=path, help="5-point landmark file (default: landmarks.txt in --data or its parent)."
        ),
        click.option("--aligned", is_flag=True, help="Images are already aligned crops: resize only."),
        click.option("--detector", help="Detect the landmarks with this registered face detector (e.g. mtcnn) "
                     "instead of reading a landmark file; detections are cached like crops."),
        click.option("--detector-option", "detector_options", multiple=True, metavar="NAME=VALUE",
                     help="A detector option (see `lrbench list detectors`); repeatable."),
        click.option("--detector-weights", type=path, help="Weights for the detector (default: its own)."),
        click.option(
            "--people",
            type=path,
            help="Train only on the people (identity folders) listed in this "
            "file: one name per line, or LFW's people.txt.",
        ),
        click.option("--people-folds", help="With a people.txt: only these folds, e.g. 2-10."),
        click.option("--flip/--no-flip", default=True, show_default=True, help="Mirror half the samples."),
        click.option("--cache-dir", type=path, help="Crop cache (default ~/.cache/lrbench or $LRBENCH_CACHE_DIR)."),
        click.option("--no-cache", is_flag=True, help="Neither read nor write the crop cache."),
    )(function)


def degradation_options(function):
    """``--degradation`` and ``--degradation-option``: how the trainer makes low-resolution copies; validation
    degrades with the same."""
    return stack_options(
        click.option(
            "--degradation",
            "-d",
            default="bicubic",
            show_default=True,
            help="Registered degradation making the LR copies (validation uses it too).",
        ),
        click.option("--degradation-option", multiple=True, metavar="NAME=VALUE", help="A degradation option."),
    )(function)
