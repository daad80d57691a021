"""Loading checkpoints the way researchers actually have them: prefixed, wrapped, in foreign layouts."""

from __future__ import annotations

import hashlib
import pickle
import re
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError

WRAPPER_PREFIXES = ("module.", "_orig_mod.", "backbone.")
STATE_KEYS = ("state_dict", "model", "model_state_dict", "net")
_SHOWN = 8


@dataclass(frozen=True)
class CheckpointLayout:
    """A foreign parameter layout: ``renames`` maps its parameter names to the model's own."""

    name: str
    renames: dict[str, str]

    def convert(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Renamed copy of ``state``; names the layout does not know are kept, to be reported as unexpected."""
        return {self.renames.get(key, key): value for key, value in state.items()}


def check_weights_file(path: str | Path, expected: str) -> None:
    """Refuse an empty file or a text file (a list, a README, a config) given where ``expected`` should be.

    Weights files are binary, so text gets a clear one-line error instead of a parser's puzzling one.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(512)
    if not head:
        raise DataError(f"{path}: empty file, not {expected}")
    if _is_text(head):
        first_line = head.decode("utf-8", "ignore").strip().splitlines()[0][:40] if head.strip() else ""
        raise DataError(f"{path}: a text file (starting {first_line!r}), not {expected}")


def _is_text(head: bytes) -> bool:
    """UTF-8 without NUL bytes or control characters other than whitespace (a cut character at the end is fine)."""
    if b"\0" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:
            return False
        text = head[: exc.start].decode("utf-8")
    return all(char.isprintable() or char in "\t\n\r\f\v" for char in text)


def read_state_dict(
    source: str | Path | Mapping[str, Any], key: str | Sequence[str] | None = None
) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint, unwrapped from its container and from wrapper prefixes.

    ``source`` is a checkpoint file (read with ``weights_only``) or a mapping already loaded (e.g. a plugin's
    own reader's output). ``key`` names the container entry that holds the weights (``"net_state_dict"``) or
    candidates tried in order; without it the common ones (``STATE_KEYS``) are tried and a bare state dict is
    taken as it is. A named key that is absent is an error listing the keys the checkpoint has.
    """
    if isinstance(source, Mapping):
        loaded, where = dict(source), "the given state dict"
    else:
        loaded, where = _load_checkpoint(Path(source)), str(source)
    if isinstance(loaded, dict):
        candidates = STATE_KEYS if key is None else (key,) if isinstance(key, str) else tuple(key)
        found = next((k for k in candidates if isinstance(loaded.get(k), Mapping)), None)
        if found is not None:
            loaded = dict(loaded[found])
        elif key is not None:
            present = ", ".join(map(str, list(loaded)[:_SHOWN])) or "none"
            raise DataError(f"{where}: no {' or '.join(map(repr, candidates))} entry holding weights; keys: {present}")
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise DataError(f"{where}: not a state dict (expected a mapping of parameter names to tensors)")
    return strip_prefixes(loaded)


def _load_checkpoint(path: Path) -> Any:
    """What ``torch.load`` finds in ``path`` (weights only); files that cannot be checkpoints are one-line errors."""
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint file")
    loaded = read_torch_file(path)
    if isinstance(loaded, dict) and "checksums" in loaded and "format" in loaded:
        # an lrbench training checkpoint: refuse a damaged one
        loaded = verified(loaded, path)
    return loaded


ZIP_START = b"PK\x03\x04"  # a zip archive's first local file header: torch.save's format since PyTorch 1.6


def read_torch_file(path: Path) -> Any:
    """What ``torch.save`` wrote to ``path``, read with ``weights_only``: tensors and plain containers, never code.

    A file that is not one, is cut short or damaged, or holds Python objects that unpickling would have to
    run is one line saying which (and never PyTorch's advice to load it with ``weights_only=False``).
    """
    try:
        check_weights_file(path, "a PyTorch checkpoint")
        with open(path, "rb") as handle:
            head = handle.read(len(ZIP_START))
        zipped = zipfile.is_zipfile(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot read the checkpoint ({exc.strerror or exc})") from None
    if not zipped and head == ZIP_START:
        raise DataError(
            f"{path}: truncated or damaged checkpoint: a zip archive (torch.save's format) without its end, "
            "as an interrupted download or copy leaves it"
        )
    if not (zipped or head.startswith(b"\x80")):  # a pickle protocol header: torch.save's format before zip files
        raise DataError(f"{path}: not a PyTorch checkpoint (torch.save writes a zip archive)")
    if zipped and not _holds_pickle(path):
        raise DataError(f"{path}: a zip archive but not a PyTorch checkpoint (no data.pkl, which torch.save writes)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _unpickler_reason(str(exc))
        if "GLOBAL" not in reason and not reason.startswith("Can only"):  # a bad opcode: damage, not objects
            raise DataError(f"{path}: truncated or damaged checkpoint ({_first_sentence(reason)})") from None
        named = re.search(r"GLOBAL ([\w.]+)", reason)
        objects = f"Python objects ({named.group(1)})" if named else "Python objects"
        raise DataError(
            f"{path}: holds {objects} that loading would have to run as code; lrbench loads tensors only and "
            "will not execute them"
        ) from None
    except Exception as exc:  # a damaged file fails anywhere inside torch's reader, with any exception type
        raise DataError(f"{path}: truncated or damaged checkpoint ({_first_sentence(str(exc))})") from None


def _holds_pickle(path: Path) -> bool:
    """Whether a zip archive has torch.save's ``<name>/data.pkl`` (an unreadable directory counts as yes: torch
    then says what is damaged)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("data.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return True


def _unpickler_reason(text: str) -> str:
    """What torch's weights-only unpickler refused, without the advice around it (its middle paragraph)."""
    paragraphs = [part.strip() for part in re.split(r"\n\s*\n", text) if part.strip()]
    return paragraphs[1] if len(paragraphs) > 2 else text.strip()


def _first_sentence(text: str) -> str:
    """The first sentence of a message (torch's reader adds sentences of advice), or "unreadable" for none."""
    text = text.strip()
    return re.split(r"(?<=[a-z0-9)])\.\s|\n", text, maxsplit=1)[0] if text else "unreadable"


def strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove DataParallel/DDP, torch.compile and training-wrapper prefixes, however they are nested."""
    stripped = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        stripped[key] = value
    return stripped


@dataclass
class Mismatch:
    missing: list[str]
    unexpected: list[str]
    misshaped: list[tuple[str, tuple, tuple]]

    @property
    def size(self) -> int:
        return len(self.missing) + len(self.unexpected) + len(self.misshaped)

    def table(self) -> str:
        lines = []
        for title, items in (("missing", self.missing), ("unexpected", self.unexpected)):
            if items:
                more = f" … ({len(items)} in all)" if len(items) > _SHOWN else ""
                lines.append(f"  {title:<11} {', '.join(items[:_SHOWN])}{more}")
        for key, want, got in self.misshaped[:_SHOWN]:
            lines.append(f"  mis-shaped  {key}: model {list(want)}, checkpoint {list(got)}")
        return "\n".join(lines)


def compare(model: torch.nn.Module, state: dict[str, torch.Tensor], ignore: tuple[str, ...] = ()) -> Mismatch:
    """How ``state`` differs from the model's own parameters and buffers (keys starting with ``ignore`` skipped)."""
    own = model.state_dict()
    keys = [k for k in state if not k.startswith(ignore)] if ignore else list(state)
    return Mismatch(
        missing=[k for k in own if k not in state],
        unexpected=[k for k in keys if k not in own],
        misshaped=[
            (k, tuple(own[k].shape), tuple(state[k].shape)) for k in keys if k in own and own[k].shape != state[k].shape
        ],
    )


def load_weights(
    model: torch.nn.Module,
    source: str | Path | Mapping[str, Any],
    layouts: tuple[CheckpointLayout, ...] = (),
    ignore: tuple[str, ...] = (),
    key: str | Sequence[str] | None = None,
) -> str:
    """Load a checkpoint in the model's own layout or any of ``layouts``; returns the layout's name.

    ``source`` and ``key`` are as for ``read_state_dict``. Keys starting with ``ignore`` (e.g. a classifier
    head that evaluation does not use) may be present or absent. When no layout fits, the error shows the
    mismatch of the closest one. Loaded from a file, the model records it as its ``weights_file`` attribute,
    which the run manifest reports with its SHA-256.
    """
    state = read_state_dict(source, key)
    candidates = [("native", state)]
    candidates += [(layout.name, layout.convert(state)) for layout in layouts if layout.renames.keys() & state.keys()]
    best_name, best = None, None
    for name, converted in candidates:
        converted = {k: v for k, v in converted.items() if not k.startswith(ignore)} if ignore else converted
        mismatch = compare(model, converted)
        if mismatch.size == 0:
            model.load_state_dict(converted, strict=True)
            if not isinstance(source, Mapping):
                model.weights_file = Path(source).resolve()  # for the run manifest: the file this network holds
            return name
        if best is None or mismatch.size < best.size:
            best_name, best = name, mismatch
    layouts_tried = ", ".join(name for name, _ in candidates)
    where = "the given state dict" if isinstance(source, Mapping) else str(source)
    error = DataError(
        f"{where}: checkpoint fits none of the layouts ({layouts_tried}); closest is {best_name!r} "
        f"with {len(best.missing)} missing, {len(best.unexpected)} unexpected, {len(best.misshaped)} mis-shaped keys"
    )
    error.details = best.table()
    raise error


OTHER_VALUES = "(values other than tensors)"


def tensor_bytes(tensor: torch.Tensor) -> np.ndarray:
    """A tensor's data as a flat uint8 array (any dtype, bfloat16 included), for hashing."""
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()


def _leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(path, value) of every tensor and other value in nested dicts, lists and tuples."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, f"{path}/{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{path}/{index}")
    else:
        yield path, value


def checksums(state: dict) -> dict[str, str]:
    """SHA-256 of each tensor (with its dtype and shape) by its path in ``state``, and one of everything else."""
    sums, others = {}, hashlib.sha256()
    for path, value in _leaves(state):
        if isinstance(value, torch.Tensor):
            digest = hashlib.sha256(f"{value.dtype} {tuple(value.shape)}".encode())
            digest.update(tensor_bytes(value))
            sums[path] = digest.hexdigest()
        else:
            others.update(f"{path}={value!r}\n".encode())
    sums[OTHER_VALUES] = others.hexdigest()
    return sums


def verified(loaded: dict, path: Path) -> dict:
    """A loaded checkpoint without its ``checksums``, once every value matches them (``path`` names it in errors)."""
    stored = loaded.pop("checksums", None)
    if not isinstance(stored, dict):
        raise DataError(f"{path}: the checkpoint has no checksums")
    actual = checksums(loaded)
    damaged = sorted(name for name in stored.keys() | actual.keys() if stored.get(name) != actual.get(name))
    if damaged:
        more = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
        raise DataError(f"{path}: damaged: {damaged[0]} does not match its checksum{more}")
    return loaded
