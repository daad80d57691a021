"""The public training API: what a trainer plugin may import (its ``__all__``; the sub-modules are private).

A trainer plugin stacks ``loop_options``, ``data_options`` (and ``degradation_options``) on its click
command, turns the values into a configuration with ``resolve_config``, and calls ``train`` with a function
building its ``Task``: the module to optimise, the dataset (``training_data`` → ``CropBatches``) and how a
batch becomes the module's inputs (``network_input``). The loop does the rest: devices, torchrun, mixed
precision, schedule, validation, verified checkpoints, a lock on the run folder and exact resume.
docs/plugins.md lists every name; the built-in trainers (``lrbench_plugins.trainers``) use nothing else.

Each name loads from its module on first use (PEP 562): declaring a trainer's command (the option decorators)
needs no torch, so listing the trainers or asking for their help starts fast.
"""

from __future__ import annotations

from ..lazy import lazy_exports

# Public name → the module under lrbench.training (or lrbench) that defines it.
_EXPORTS = {
    "BEST": ".checkpoint",
    "HEADS": ".heads",
    "INTERRUPTED_EXIT_CODE": ".loop",
    "LAST": ".checkpoint",
    "MARGIN_HEADS": ".settings",
    "MODEL": ".checkpoint",
    "CropBatches": ".data",
    "FaceFolder": ".data",
    "LoopSettings": ".settings",
    "MarginHead": ".heads",
    "Ranks": "lrbench.eval.distributed",
    "Task": ".loop",
    "autocast_for": "lrbench.eval.precision",
    "data_options": ".options",
    "dfs_option": ".config",
    "degradation": ".networks",
    "degradation_options": ".options",
    "embedding_size": ".networks",
    "features_of_all": ".networks",
    "frozen_network": ".networks",
    "loop_options": ".options",
    "loop_settings": ".config",
    "network_input": ".networks",
    "resolve_config": ".config",
    "resolve_precision": ".loop",
    "scan_folder": ".data",
    "train": ".loop",
    "trainable_network": ".networks",
    "training_data": ".config",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
