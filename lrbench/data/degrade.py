"""Resolution degradation helpers: DF parsing, the down-then-up resize that plugins build on, and each
image's own seed for random degradations."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..ranges import parse_ranges

if TYPE_CHECKING:  # torch is imported where a batch is resized: registering the degradations must not load it
    import torch


def probe_size(crop_size: tuple[int, int], df: int) -> tuple[int, int]:
    """The low-resolution (width, height) of a crop at degradation factor ``df``, as the seed computes it."""
    width, height = crop_size
    return int(width / df), int(height / df)


def parse_dfs(text: str, crop_size: tuple[int, int], option: str = "--df") -> list[int]:
    """``8``, ``1-13`` or ``1,2,4,8`` (or a mix) → sorted unique DFs valid for the crop; errors name ``option``."""
    width, height = crop_size
    bound = f"the {width}×{height} crop"
    return parse_ranges(text, option, unit="DF", low=1, high=min(crop_size), bound=bound, example="8, 1-13 or 1,2,4,8")


def resize_down_up(
    batch: torch.Tensor,
    df: int,
    *,
    down: str,
    up: str,
    antialias: bool,
    quantize: bool = False,
) -> torch.Tensor:
    """Resize an NCHW 0…255 batch to the probe size and back; DF 1 returns the batch unchanged.

    ``down`` is any of torch's interpolation modes, ``area`` included (``antialias`` then has no meaning).

    ``quantize`` rounds to uint8 levels after each resize, as an OpenCV pipeline on uint8 images does.
    """
    if df == 1:
        return batch
    import torch.nn.functional as F

    height, width = batch.shape[-2:]
    small_w, small_h = probe_size((width, height), df)
    if down == "area":  # each small pixel the mean of the crop pixels it covers: already a box filter
        small = F.interpolate(batch, size=(small_h, small_w), mode="area")
    else:
        small = F.interpolate(batch, size=(small_h, small_w), mode=down, antialias=antialias, align_corners=False)
    if quantize:
        small = small.round().clamp(0, 255)
    large = F.interpolate(small, size=(height, width), mode=up, align_corners=False)
    large = large.clamp(0, 255)
    return large.round() if quantize else large


def image_seeds(names: Sequence[str], df: int, run_seed: int) -> np.ndarray:
    """Each image's own seed for a random degradation at ``df``: a hash of the run's seed, the DF and the image's
    name (its path in the protocol), so an image gets the same randomness whatever batch it falls in, on any
    machine and at any batch size, and another at another DF or run seed. Non-negative int64."""
    return np.array(
        [int.from_bytes(hashlib.sha256(f"{run_seed}\0{df}\0{name}".encode()).digest()[:8], "little") >> 1
         for name in names],
        dtype=np.int64,
    )
