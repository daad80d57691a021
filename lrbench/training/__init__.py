"""The public training API: what a trainer plugin may import (its ``__all__``; the sub-modules are private).

A trainer plugin stacks ``loop_options``, ``data_options`` (and ``degradation_options``) on its click
command, turns the values into a configuration with ``resolve_config``, and calls ``train`` with a function
building its ``Task``: the module to optimise, the dataset (``training_data`` → ``CropBatches``) and how a
batch becomes the module's inputs (``network_input``). The loop does the rest: devices, torchrun, mixed
precision, schedule, validation, verified checkpoints, a lock on the run folder and exact resume.
docs/plugins.md lists every name; the built-in trainers (``lrbench_plugins.trainers``) use nothing else.
"""

from ..eval.distributed import Ranks
from ..eval.precision import autocast_for
from .checkpoint import BEST, LAST, MODEL
from .data import CropBatches, FaceFolder, scan_folder
from .heads import HEADS, MarginHead
from .loop import INTERRUPTED_EXIT_CODE, LoopSettings, Task, resolve_precision, train
from .networks import degradation, embedding_size, features_of_all, frozen_network, network_input, trainable_network
from .options import (
    data_options,
    degradation_options,
    dfs_option,
    loop_options,
    loop_settings,
    resolve_config,
    training_data,
)

__all__ = [
    "BEST",
    "HEADS",
    "INTERRUPTED_EXIT_CODE",
    "LAST",
    "MODEL",
    "CropBatches",
    "FaceFolder",
    "LoopSettings",
    "MarginHead",
    "Ranks",
    "Task",
    "autocast_for",
    "data_options",
    "dfs_option",
    "degradation",
    "degradation_options",
    "embedding_size",
    "features_of_all",
    "frozen_network",
    "loop_options",
    "loop_settings",
    "network_input",
    "resolve_config",
    "resolve_precision",
    "scan_folder",
    "train",
    "trainable_network",
    "training_data",
]
