"""The gallery's features, computed once per study and kept on disk beside the crops for every later run.

A sweep in probe mode degrades only the probes, so the features of the gallery and the distractors (at DF 1,
which is never degraded) are the same at every DF and in every run of the same network on the same images: a
second ``lrbench run`` with other DFs reads them instead of embedding 150,000 distractors again. An entry is a
numpy ``.npz`` file (zip: each member's CRC is checked as it is read) holding the features of the gallery's
rows and the key they were computed under. The key covers everything a feature depends on: the crops (every
image's bytes, the landmarks, the template, the alignment and decoder versions: the crop cache's key), which
of the protocol's images are the gallery, the backbone (name, plugin version, every option, the input it is
fed), its weights (the file's SHA-256), flip fusion, precision, memory format, compilation, the device type
and the versions of lrbench and torch. An entry that does not read back, or holds another key, is rebuilt;
a cache folder that cannot be written means running without it: one warning, never an error.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..fileio import sha256_file, write_atomic
from ..progress import warn

FORMAT = 1


def gallery_key(prepared, rows: np.ndarray) -> str:
    """The key of the DF 1 features of ``rows`` (indices into the protocol's images) in a prepared run."""
    settings = prepared.settings
    weights = sha256_file(prepared.weights_file) if prepared.weights_file else settings.weights  # or "random"
    header = {
        "format": FORMAT,
        "crops": prepared.cache["key"],
        "rows": hashlib.sha256(np.ascontiguousarray(rows, dtype=np.int64).tobytes()).hexdigest(),
        "backbone": prepared.backbone.name,
        "plugin": prepared.origins.get("backbone"),
        "options": prepared.backbone_options,
        "input": prepared.input_spec.describe(),
        "provenance": getattr(prepared.extractor.model, "provenance", None),
        "weights": weights,
        "fusion": prepared.fusion,
        "precision": settings.precision,
        "memory_format": str(prepared.extractor.memory_format),
        "compile": settings.compile,
        "device": prepared.device.type,
        "versions": {"lrbench": _lrbench_version(), "torch": torch.__version__},
    }
    return hashlib.sha256(json.dumps(header, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _lrbench_version() -> str:
    from ..version import __version__

    return __version__


class GalleryFeatures:
    """One cache entry of a run's gallery features (``path`` None: no cache) and what became of it, for the
    manifest (``note``)."""

    def __init__(self, cache_dir: Path | None, backbone: str, key: str):
        self.path = Path(cache_dir) / f"features-{backbone}-{key}.npz" if cache_dir else None
        self.key = key
        self.note: dict = {"key": key, "path": str(self.path) if self.path else None, "hit": False,
                           "rebuilt": False, "rebuild_reason": None, "cache_error": None}

    def load(self, count: int) -> np.ndarray | None:
        """The (count, D) float32 features of the entry, or None (no entry, or one that does not verify)."""
        if self.path is None:
            return None
        try:
            with np.load(self.path, allow_pickle=False) as entry:
                key, features = str(entry["key"]), entry["features"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            return self._rebuild(f"cannot read it ({exc})")
        if key != self.key:
            return self._rebuild("it holds features of another key")
        if features.dtype != np.float32 or features.ndim != 2 or len(features) != count:
            return self._rebuild(f"it holds {features.shape} {features.dtype} values, not {count} feature rows")
        self.note["hit"] = True
        return features

    def _rebuild(self, reason: str) -> None:
        self.note.update(rebuilt=True, rebuild_reason=reason)
        warn(f"feature cache {self.path}: {reason}; computing the gallery's features again")
        return None

    def store(self, features: np.ndarray) -> None:
        """Write the entry (atomically); a cache that cannot be written is a warning."""
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, lambda handle: np.savez(handle, key=np.asarray(self.key),
                                                             features=np.ascontiguousarray(features, np.float32)))
        except OSError as exc:
            self.note["cache_error"] = f"cannot write it ({exc.strerror or exc})"
            warn(f"feature cache {self.path}: {self.note['cache_error']}; ran without it")
