"""Training for lrbench's trainers: data, margin heads, the loop, checkpoints and torchrun support.

A trainer plugin builds a ``Task`` (see ``loop.Task``) from its command's options and calls ``train``;
``loop_options`` and ``data_options`` give its command the options every trainer shares.
"""

from ..precision import autocast_for
from .checkpoint import BEST, LAST, MODEL
from .data import CropBatches, FaceFolder, scan_folder
from .distributed import Ranks
from .heads import HEADS, MarginHead
from .loop import INTERRUPTED_EXIT_CODE, LoopSettings, Task, resolve_precision, train
from .networks import degradation, embedding_size, features_of_all, frozen_network, network_input, trainable_network
from .options import data_options, dfs_option, loop_options, loop_settings, resolve_config, training_data

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
