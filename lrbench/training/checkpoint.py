"""Training checkpoints: written to a temporary file and renamed, so a kill at any moment leaves the last one whole.

A checkpoint is a plain dict that ``torch.load(..., weights_only=True)`` reads: the backbone's state dict
under ``model`` (so ``lrbench run --weights last.pt`` evaluates it directly), the rest of the trained
module (a classification head) under ``head``, and optimizer, scheduler, scaler, RNG states, step,
epoch and the run's configuration under their own keys.
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError

LAST, BEST, MODEL = "last.pt", "best.pt", "model.pt"
VALIDATION = "validation-weights.pt"  # the backbone's weights while ``lrbench run``'s evaluation reads them
FORMAT = 1


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` into a temporary sibling, flushed to disk, then renamed over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would make checkpoints private to the user who trained
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def copy_atomic(source: Path, target: Path) -> None:
    """Copy a file so that ``target`` is never seen half-written."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(folder: Path) -> None:
    """Temporary files a killed run left behind (never a complete checkpoint)."""
    for name in (LAST, BEST, MODEL, VALIDATION):
        for stale in Path(folder).glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)
    (Path(folder) / VALIDATION).unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict:
    """A checkpoint written by ``save_atomic``; an unreadable file is an error naming it."""
    path = Path(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot read checkpoint ({first_line})") from None
    if not isinstance(loaded, dict) or loaded.get("format") != FORMAT:
        raise DataError(f"{path}: not an lrbench training checkpoint")
    return loaded


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
