"""Resolution degradation helpers: DF parsing and the down-then-up resize that plugins build on."""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F

from .errors import UsageError

_DF_ITEM = re.compile(r"^(-?\d+)(?:-(-?\d+))?$")


def probe_size(crop_size: tuple[int, int], df: int) -> tuple[int, int]:
    """The low-resolution (width, height) of a crop at degradation factor ``df``, as the seed computes it."""
    width, height = crop_size
    return int(width / df), int(height / df)


def parse_dfs(text: str, crop_size: tuple[int, int]) -> list[int]:
    """``8``, ``1-13`` or ``1,2,4,8`` (or a mix) → sorted unique DFs valid for the crop."""
    dfs: set[int] = set()
    for part in str(text).replace(" ", "").split(","):
        match = _DF_ITEM.match(part)
        if not match:
            raise UsageError(f"--df {text}: expected DFs like 8, 1-13 or 1,2,4,8")
        low = int(match[1])
        high = int(match[2]) if match[2] is not None else low
        if low > high:
            raise UsageError(f"--df {text}: range {part} runs backwards")
        dfs.update(range(low, high + 1))
    limit = min(crop_size)
    for df in sorted(dfs):
        if df < 1:
            raise UsageError(f"--df {text}: DF must be at least 1, got {df}")
        if df > limit:
            raise UsageError(
                f"--df {text}: DF {df} is larger than the {crop_size[0]}×{crop_size[1]} crop "
                f"(at most {limit})"
            )
    return sorted(dfs)


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

    ``quantize`` rounds to uint8 levels after each resize, as an OpenCV pipeline on uint8 images does.
    """
    if df == 1:
        return batch
    height, width = batch.shape[-2:]
    small_w, small_h = probe_size((width, height), df)
    small = F.interpolate(batch, size=(small_h, small_w), mode=down, antialias=antialias, align_corners=False)
    if quantize:
        small = small.round().clamp(0, 255)
    large = F.interpolate(small, size=(height, width), mode=up, align_corners=False)
    large = large.clamp(0, 255)
    return large.round() if quantize else large
