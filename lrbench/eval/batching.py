"""``--batch-size auto``: the batch a network runs fastest at, measured on the run's own first crops.

The best batch is a property of the network, the input size, the device and its arithmetic, not a
constant: on a 2-core CPU a MobileFaceNet ran 2.5× faster at 32 faces than at 256 (large tensors are
mapped and unmapped on every batch), while a GPU wants the largest batch that fits. So the first batches
of a run climb through candidate sizes, timing each; the climb stops when throughput falls, when memory
runs out (CUDA) or when the next candidate would take the measurement past a couple of seconds. The
first batches warm the network up untimed, each candidate is timed over several batches (its fastest
counts), and a candidate slower than the best so far is timed once more before the climb stops, so one
batch slowed by another process, or a network still warming, does not decide. Those batches are the run's
real work, so their features are the run's features and measuring costs nothing but a few batches at sizes
that are not the best. The choice is remembered in the cache folder, keyed by everything that changes it,
so later runs start at the right size at once. A network that runs a fixed number of faces per call (an
ONNX graph exported with batch 1) declares it as its ``fixed_batch``: it takes that many at a time
whatever it is handed, so there is nothing to measure; auto hands it ``FIXED_GRAPH_FACES`` faces per call
(a multiple of its batch), which it feeds to the graph piece by piece, so lrbench's own per-call work is
shared by many faces.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter

import numpy as np
import torch

from ..errors import UsageError
from ..fileio import write_atomic
from ..progress import warn

CANDIDATES = (8, 16, 32, 64, 128, 256, 512, 1024)  # faces per batch (the mirror images double what the network sees)
MEASURE_SECONDS = 2.0  # no candidate is tried that would take the measurement past this much network time
REPEATS = 2  # batches timed per candidate, at least
MIN_SECONDS = 0.3  # and at least this long (up to 4 × REPEATS batches), so tiny networks are timed fairly; the
# untimed warm-up lasts as long too
KEEP = 0.95  # a larger batch is kept while it reaches this fraction of the best throughput (measurement noise)
FIXED_GRAPH_FACES = 32  # faces handed per call to a network with a fixed batch (rounded up to a multiple of it)
MEMORY_FILE = "batch_sizes.json"
FORMAT = "lrbench batch sizes 1"


def parse_batch_size(value: int | str) -> int | str:
    """``--batch-size``: a positive whole number of faces, or ``auto``."""
    if value == "auto":
        return value
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1 or isinstance(value, bool | float):
        raise UsageError(f"--batch-size {value}: must be a whole number of faces, at least 1, or auto")
    return number


def device_name(device: torch.device) -> str:
    """What the device is (GPU model, CPU model), since the best batch depends on it."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_key(
    backbone: str,
    options: dict,
    input_size: tuple[int, int],
    device: torch.device,
    precision: str,
    channels_last: bool,
    compiled: bool,
    mirrored: bool,
) -> dict:
    """Everything the best batch depends on: a remembered choice is reused only when all of it matches."""
    key = {
        "backbone": backbone,
        "options": options,
        "input_size": list(input_size),
        "device": device.type,
        "device_name": device_name(device),
        "precision": precision,
        "channels_last": channels_last,
        "compile": compiled,
        "mirror_images": mirrored,
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
    }
    return json.loads(json.dumps(key, default=str))  # as it reads back from the file (tuples → lists)


def pick(rates: dict[int, float]) -> int:
    """The largest measured batch that keeps (nearly) the best throughput: on a GPU the largest that helps."""
    best = max(rates.values())
    return max(size for size, rate in rates.items() if rate >= KEEP * best)


def _smaller(size: int) -> int:
    """The next size down after running out of memory at ``size``."""
    return max([c for c in CANDIDATES if c < size], default=size // 2)


@dataclass
class BatchSizer:
    """Hands out the rows of each feature pass in batches, choosing the size first when it is ``auto``."""

    size: int | None  # faces per batch; None until measured
    how: str  # explicit, fixed (by the network), remembered or measured
    key: dict | None = None
    memory: Path | None = None  # the file remembering choices; None: nothing read or written
    rates: dict[int, float] = field(default_factory=dict)  # candidate → images (faces) per second
    complete: bool = True  # False: too few images to finish the climb, so the choice is not remembered
    stepped_down: list[int] = field(default_factory=list)  # sizes left after running out of CUDA memory
    network_batch: int | None = None  # the faces a fixed-batch network takes per run of its graph

    @classmethod
    def choose(
        cls, batch_size: int | str, key: dict, cache_dir: Path | None, fixed: int | None = None
    ) -> BatchSizer:
        """An explicit size, the network's ``fixed`` batch, a choice remembered for ``key`` in ``cache_dir``, or
        one to measure."""
        batch_size = parse_batch_size(batch_size)
        if batch_size != "auto":
            return cls(batch_size, "explicit")
        if fixed:
            return cls(fixed * -(-FIXED_GRAPH_FACES // fixed), "fixed", network_batch=fixed)
        memory = Path(cache_dir) / MEMORY_FILE if cache_dir is not None else None
        entry = _read_memory(memory).get(_key_text(key)) if memory else None
        if entry:
            rates = {int(size): rate for size, rate in entry.get("images_per_s", {}).items()}
            return cls(entry["batch_size"], "remembered", key, memory, rates)
        return cls(None, "measured", key, memory)

    def batches(self, rows: np.ndarray, compute: Callable[[np.ndarray], torch.Tensor]) -> Iterator[tuple]:
        """``(batch_rows, compute(batch_rows))`` over ``rows`` in order, each row once.

        With ``auto``, running out of CUDA memory empties the cache and steps down to a smaller size for
        the rest of the run instead of failing.
        """
        start = 0
        if self.size is None:
            start = yield from self._measure(rows, compute)
        while start < len(rows):
            batch_rows = rows[start : start + self.size]
            try:
                out = compute(batch_rows)
            except torch.cuda.OutOfMemoryError:
                if self.how in ("explicit", "fixed") or self.size == 1:  # a fixed batch runs as it is at any size
                    raise
                torch.cuda.empty_cache()
                self.size = _smaller(self.size)
                self.stepped_down.append(self.size)
                continue
            yield batch_rows, out
            start += len(batch_rows)

    def _measure(self, rows: np.ndarray, compute) -> Iterator[tuple]:
        """Climb through the candidates on the first rows; returns how many rows that used.

        Batches of the first size warm the network up untimed for ``MIN_SECONDS`` (one batch at least). Each
        candidate then runs at least two batches (and ``MIN_SECONDS``) and counts its fastest, so a moment of
        interference from other processes does not decide the choice; a candidate that falls below ``KEEP`` of
        the best is timed again (its fastest over both counts) and ends the climb only if it is still below.
        """
        start, spent, warming, timed, confirming = 0, 0.0, 0.0, [], False
        sizes = iter(CANDIDATES)
        size = next(sizes)
        while size is not None:
            if start + size > len(rows):
                self.complete = False
                break
            if not timed and self.rates and spent + REPEATS * size / max(self.rates.values()) > MEASURE_SECONDS:
                break
            batch_rows = rows[start : start + size]
            started = perf_counter()
            try:
                out = compute(batch_rows)
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                if self.rates or size == 1:
                    break
                size, timed = _smaller(size), []  # not even the first candidate fits: below it
                continue
            seconds = perf_counter() - started
            yield batch_rows, out
            start += size
            if warming is not None:
                warming += seconds
                warming = None if warming >= MIN_SECONDS else warming
                continue
            timed.append(seconds)
            spent += seconds
            if len(timed) < REPEATS or (sum(timed) < MIN_SECONDS and len(timed) < 4 * REPEATS):
                continue
            self.rates[size] = max(self.rates.get(size, 0.0), size / max(min(timed), 1e-9))
            timed = []
            if self.rates[size] < KEEP * max(self.rates.values()):
                if confirming:
                    break
                confirming = True  # a drop beyond the noise margin: time this candidate once more
                continue
            confirming = False
            size = next(sizes, None)
        self.size = pick(self.rates) if self.rates else size
        if self.complete and self.rates and self.memory is not None:
            self._remember()
        return start

    def _remember(self) -> None:
        choices = _read_memory(self.memory, quiet=True)
        choices[_key_text(self.key)] = {
            "batch_size": self.size,
            "images_per_s": {str(size): round(rate, 1) for size, rate in self.rates.items()},
            "key": self.key,
        }
        try:
            self.memory.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.memory, json.dumps({"format": FORMAT, "choices": choices}, indent=1) + "\n")
        except OSError as exc:
            warn(f"{self.memory}: cannot remember the batch size ({exc.strerror or exc}); measured again next time")

    def describe(self) -> dict:
        """The manifest's account of the batch size: the number and how it was chosen."""
        out: dict = {"batch_size": self.size, "chosen": self.how}
        if self.how == "fixed":
            out["network_batch"] = self.network_batch
            out["note"] = (f"the network runs {self.network_batch} at a time whatever it is handed: nothing to "
                           f"measure; it is handed {self.size} per call and runs them {self.network_batch} at a time")
        elif self.how != "explicit":
            out["images_per_s"] = {str(size): round(rate, 1) for size, rate in self.rates.items()}
            out["memory_file"] = str(self.memory) if self.memory else None
            out["key"] = self.key
        if not self.complete:
            out["note"] = "too few images to try every candidate; not remembered"
        if self.stepped_down:
            out["stepped_down_to"] = self.stepped_down  # after running out of CUDA memory
        return out


def _key_text(key: dict) -> str:
    return json.dumps(key, sort_keys=True)


def _read_memory(path: Path, quiet: bool = False) -> dict:
    """The remembered choices; a damaged or foreign file counts as empty (with one warning) and is rewritten."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        text, problem = None, str(exc)
    if text is not None:
        try:
            data = json.loads(text)
            choices = data["choices"] if data.get("format") == FORMAT else None
            if isinstance(choices, dict) and all(_valid(entry) for entry in choices.values()):
                return choices
            problem = "not an lrbench batch-size file"
        except (ValueError, AttributeError, KeyError, TypeError):
            problem = "damaged JSON"
    if not quiet:
        warn(f"{path}: {problem}; ignored, the batch size is measured again and the file rewritten")
    return {}


def _valid(entry) -> bool:
    if not isinstance(entry, dict):
        return False
    size, rates = entry.get("batch_size"), entry.get("images_per_s", {})
    return (
        isinstance(size, int)
        and not isinstance(size, bool)
        and size >= 1
        and isinstance(rates, dict)
        and all(str(k).isdigit() and isinstance(v, int | float) for k, v in rates.items())
    )
