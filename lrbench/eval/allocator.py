"""Keep the memory of large tensors inside the process instead of handing it back to the kernel every batch.

glibc's malloc serves every allocation above its mmap threshold (128 KiB, growing to at most 32 MiB) with a
fresh ``mmap`` and returns it with ``munmap`` on free. A face network's activations are tens of megabytes a
batch, so every batch maps them, faults every page in again (zero-filled by the kernel) and unmaps them:
measured here on SphereFace-20 at batch 256, 3.0 million minor page faults and 5.3 s of system time for 512
images; with the threshold raised, 21 thousand faults, 0.1 s, and 1.5× the images/s (benchmarks/
bench_speed.py). Raising the mmap and trim thresholds once at start-up keeps freed blocks in the heap for
the next batch. The price: the process keeps its peak memory until it exits, which suits a batch job.

Left alone when the user chose malloc settings (``MALLOC_*_`` variables or ``GLIBC_TUNABLES``), when the C
library is not glibc, or when ``LRBENCH_TUNE_MALLOC=0``.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform

OPT_OUT_ENV = "LRBENCH_TUNE_MALLOC"
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # from glibc's <malloc.h>
_KEEP = 2**31 - 1  # the largest value mallopt's int takes: no block is ever mmap'ed or trimmed away
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")


@functools.cache
def tune_allocator() -> dict[str, object]:
    """Raise glibc's mmap and trim thresholds for this process (once); returns what was done, for manifests."""
    libc, version = platform.libc_ver()
    state: dict[str, object] = {"libc": f"{libc} {version}".strip() or "unknown"}
    if os.environ.get(OPT_OUT_ENV, "").strip() == "0":
        return {**state, "tuned": False, "why": f"{OPT_OUT_ENV}=0"}
    chosen = [name for name in _USER_SETTINGS if name in os.environ]
    if "malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        chosen.append("GLIBC_TUNABLES")
    if chosen:
        return {**state, "tuned": False, "why": f"left to the user's {', '.join(chosen)}"}
    if libc != "glibc":
        return {**state, "tuned": False, "why": "not glibc"}
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    accepted = mallopt(_M_MMAP_THRESHOLD, _KEEP) == 1 and mallopt(_M_TRIM_THRESHOLD, _KEEP) == 1
    if not accepted:
        return {**state, "tuned": False, "why": "mallopt refused the thresholds"}
    return {**state, "tuned": True, "mmap_threshold": _KEEP, "trim_threshold": _KEEP}
