"""Training checkpoints: written atomically, so a kill at any moment leaves the last one whole, and verified
when read, so a damaged file is an error instead of a different model.

A checkpoint is a plain dict that ``torch.load(..., weights_only=True)`` reads: the backbone's state dict
under ``model`` (so ``lrbench run --weights last.pt`` evaluates it directly), the rest of the trained
module (a classification head) under ``head``, and optimizer, scheduler, scaler, RNG states, step, total
steps, epoch and the run's configuration under their own keys; ``checksums`` holds a SHA-256 of every
tensor and one of all the other values.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from ..eval.checkpoints import checksums, read_torch_file, verified
from ..fileio import write_atomic

LAST, BEST, MODEL = "last.pt", "best.pt", "model.pt"
LOG, SUMMARY = "log.jsonl", "summary.json"
VALIDATION = "validation-weights.pt"  # the backbone's weights while ``lrbench run``'s evaluation reads them
FORMAT = 2  # 2: with checksums


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` through ``write_atomic``: a reader never sees half a file."""
    write_atomic(path, lambda handle: torch.save(obj, handle))


def save_checkpoint(state: dict, path: Path) -> None:
    """A training state with the checksums ``load_checkpoint`` verifies."""
    save_atomic({**state, "checksums": checksums(state)}, path)


def copy_atomic(source: Path, target: Path) -> None:
    """Copy a file so that ``target`` is never seen half-written."""
    with open(source, "rb") as original:
        write_atomic(target, lambda handle: shutil.copyfileobj(original, handle))


def remove_stale_temporaries(folder: Path) -> None:
    """Temporary files a killed run left behind (never a complete file)."""
    for name in (LAST, BEST, MODEL, VALIDATION, LOG, SUMMARY):
        for stale in Path(folder).glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)
    (Path(folder) / VALIDATION).unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict:
    """A checkpoint written by ``save_checkpoint``, verified; an unreadable or damaged file is an error naming it."""
    path = Path(path)
    loaded = read_torch_file(path)
    if not isinstance(loaded, dict) or not isinstance(loaded.get("format"), int):
        raise DataError(f"{path}: not an lrbench training checkpoint")
    if loaded["format"] != FORMAT:
        raise DataError(f"{path}: checkpoint format {loaded['format']}, this lrbench reads format {FORMAT}")
    return verified(loaded, path)


def rng_states() -> dict:
    """Python, numpy, torch and CUDA generator states, in types ``weights_only`` loading accepts."""
    state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {
            **state,
            "state": {"key": torch.from_numpy(state["state"]["key"].astype(np.int64)), "pos": state["state"]["pos"]},
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    numpy_state = dict(states["numpy"])
    numpy_state["state"] = {
        "key": states["numpy"]["state"]["key"].numpy().astype(np.uint32),
        "pos": states["numpy"]["state"]["pos"],
    }
    np.random.set_state(numpy_state)
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
