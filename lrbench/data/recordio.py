"""insightface's training packs (``train.rec`` + ``train.idx``) read without MXNet: random access through the index.

The format is MXNet's RecordIO (dmlc-core ``src/recordio.cc``, ``mxnet.recordio``) as insightface fills it
(``recognition/arcface_torch/dataset.py``):

- a record on disk is a uint32 marker 0xced7230a, a uint32 whose low 29 bits are the data's length and whose
  upper 3 bits are a continuation flag, the data, and zero bytes padding it to a multiple of 4. Data holding
  the marker at a 4-byte boundary is written in parts split there (flags 1 first, 2 middle, 3 last; 0 for a
  record in one part), the marker itself left out: reading joins the parts with the marker between them;
- the data starts with an ``IRHeader`` (``<IfQQ``: flag, label, id, id2); a flag above 0 means that many
  float32 labels follow it (the header's own label is then unused); the rest is the image (a JPEG);
- ``train.idx`` beside it has one line ``key<TAB>byte offset`` per record;
- record 0 is a header whose two labels (start, end) give the identity records start … end − 1; identity
  record ``start + k`` labels the range [a, b) of image records of identity k; the images are records
  1 … start − 1, each labelled with its identity. A pack without that header (flag 0) has images only, and
  their labels are read from every record (a scan, so such a pack opens more slowly).

The index, not a scan of the data, is what opening reads, so a pack of millions of images opens in seconds.
Nothing is unpickled or executed: a record is bytes, numbers and an image. A pack that is truncated, whose
index points elsewhere than at records, or whose records contradict each other is refused, naming the record.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError, UsageError
from ..specs import ARCFACE_112x112, CropTemplate
from .align import AlignmentError, TemplateConversion
from .crops import DECODE_ERRORS, max_image_pixels

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
LENGTH_BITS = 29
IRHEADER = struct.Struct("<IfQQ")  # flag, label, id, id2
WHOLE, FIRST, MIDDLE, LAST = 0, 1, 2, 3
PACK_TEMPLATE = ARCFACE_112x112  # insightface's packs hold 112×112 crops aligned to the ArcFace template
DECODE_THREADS = min(4, os.cpu_count() or 1)


@dataclass(frozen=True)
class Record:
    """One record: its IRHeader fields (``labels``: the float labels after it, empty when its flag is 0) and the
    bytes that follow (an image)."""

    key: int
    flag: int
    label: float
    id: int
    id2: int
    labels: np.ndarray
    payload: bytes

    @property
    def first_label(self) -> float:
        """The record's class label: the first of its labels, or the header's own when it has none."""
        return float(self.labels[0]) if len(self.labels) else self.label


def read_index(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(keys, byte offsets) of a ``.idx`` file, sorted by key; a malformed line is an error naming it."""
    raw = path.read_bytes().strip()
    lines = raw.count(b"\n") + 1 if raw else 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # older numpy warns where the text stops parsing
            numbers = np.fromstring(raw.replace(b"\t", b" ").decode("ascii", "replace"), dtype=np.int64, sep=" ")
    except ValueError:  # numpy 2 refuses text it cannot read to its end
        numbers = np.empty(0, dtype=np.int64)
    if len(numbers) != 2 * lines or not lines:
        raise DataError(f"{path}: {_bad_index_line(raw) if lines else 'empty'}: expected 'key<TAB>byte offset' lines")
    keys, offsets = numbers[0::2], numbers[1::2]
    if keys.min() < 0 or offsets.min() < 0:
        bad = int(np.argmax((keys < 0) | (offsets < 0)))
        raise DataError(f"{path}: line {bad + 1}: a negative key or offset")
    if not np.all(keys[1:] > keys[:-1]):  # packs list their records in order; sort any other index
        order = np.argsort(keys, kind="stable")
        keys, offsets = keys[order], offsets[order]
    repeated = np.flatnonzero(keys[1:] == keys[:-1])
    if len(repeated):
        raise DataError(f"{path}: record {keys[repeated[0]]} is listed twice")
    return keys, offsets


def _bad_index_line(raw: bytes) -> str:
    for number, line in enumerate(raw.split(b"\n"), start=1):
        fields = line.split()
        if len(fields) != 2 or not all(field.isdigit() for field in fields):
            return f"line {number} ({line[:40].decode('utf-8', 'replace')!r})"
    return "a line"


class RecordPack:
    """A ``.rec`` file opened through the ``.idx`` beside it: ``images`` (record keys), their ``labels`` (0-based
    identities) and the number of ``identities``; ``read(key)`` and ``image(position)`` read single records.

    The file is read with ``os.pread`` (no shared position), so threads and forked processes can share it; a
    copy sent to another process opens the file again.
    """

    def __init__(self, path: Path):
        self._fd: int | None = None
        self._pid = 0
        self.path = Path(path)
        self.index_path = self.path.with_suffix(".idx")
        if not self.path.is_file():
            raise UsageError(f"--data {self.path}: no such file")
        if not self.index_path.is_file():
            raise UsageError(f"--data {self.path}: its index {self.index_path.name} is not beside it (a pack is "
                             "train.rec and train.idx)")
        self.size = self.path.stat().st_size
        self._keys, self._offsets = read_index(self.index_path)
        self._dense = bool(self._keys[0] == 0 and self._keys[-1] == len(self._keys) - 1)  # keys 0 … n − 1
        self._next = self._following_offsets()
        beyond = np.flatnonzero(self._offsets + 8 > self.size)
        if len(beyond):
            key, offset = int(self._keys[beyond[0]]), int(self._offsets[beyond[0]])
            raise DataError(f"{self.path}: record {key} (byte {offset}): the file ends at byte {self.size}, before "
                            f"it: the pack is truncated ({len(beyond)} records cut off)")
        self.read(int(self._keys[np.argmax(self._offsets)]))  # the record nearest the end: a cut file shows here
        self.images, self.labels, self.identities, self.has_header = self._contents()

    def _following_offsets(self) -> np.ndarray:
        """Per record (in key order), where the next record in the file begins: no record may run past it."""
        following = np.empty_like(self._offsets)
        if np.all(self._offsets[1:] > self._offsets[:-1]):  # written in key order, as packs are
            following[:-1], following[-1] = self._offsets[1:], self.size
            return following
        order = np.argsort(self._offsets, kind="stable")
        shared = np.flatnonzero(self._offsets[order[1:]] == self._offsets[order[:-1]])
        if len(shared):
            first, second = (int(self._keys[order[k]]) for k in (shared[0], shared[0] + 1))
            raise DataError(f"{self.index_path}: records {first} and {second} both start at byte "
                            f"{self._offsets[order[shared[0]]]}")
        following[order[:-1]], following[order[-1]] = self._offsets[order[1:]], self.size
        return following

    # -- records -------------------------------------------------------------------------------------------------

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None, "_pid": 0}

    def _pread(self, size: int, offset: int) -> bytes:
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return os.pread(self._fd, size, offset)

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None

    def __del__(self):
        self.close()

    def _position(self, key: int) -> int:
        """Where ``key`` is in the index's arrays."""
        position = key if self._dense else int(np.searchsorted(self._keys, key))
        if not 0 <= position < len(self._keys) or self._keys[position] != key:
            raise DataError(f"{self.index_path}: has no record {key}")
        return position

    def offset(self, key: int) -> int:
        return int(self._offsets[self._position(key)])

    def error(self, key: int, problem: str) -> DataError:
        """A DataError naming the pack, the record and where it starts."""
        return DataError(f"{self.path}: record {key} (byte {self.offset(key)}): {problem}")

    def read(self, key: int, fetch=None) -> Record:
        """The record ``key``, its parts joined; a damaged or truncated record is an error naming it.

        ``fetch(size, offset)`` reads the file's bytes (default: from the file; ``read_all`` passes a buffer).
        """
        fetch = fetch or self._pread
        index = self._position(key)
        offset, limit = int(self._offsets[index]), int(self._next[index])
        data, position, part = bytearray(), offset, 0
        while True:
            head = fetch(8, position)
            if len(head) < 8:
                raise self.error(key, f"cut off at byte {self.size}: the pack is truncated")
            magic, encoded = struct.unpack("<II", head)
            if magic != MAGIC:
                raise self.error(key, f"no record marker at byte {position} (found 0x{magic:08x}): the pack "
                                 "is damaged, or its index belongs to another file")
            flag, length = encoded >> LENGTH_BITS, encoded & ((1 << LENGTH_BITS) - 1)
            if flag not in ((WHOLE, FIRST) if part == 0 else (MIDDLE, LAST)):
                raise self.error(key, f"part {part + 1} has continuation flag {flag}: the pack is damaged")
            end = position + 8 + (length + 3) // 4 * 4
            if end > self.size:
                raise self.error(key, f"{length} bytes of data run past the end of the file ({self.size} "
                                 "bytes): the pack is truncated")
            if end > limit:
                raise self.error(key, f"{length} bytes of data run into the next record (byte {limit}): "
                                 "the pack is damaged")
            data += fetch(length, position + 8)
            if flag in (WHOLE, LAST):
                break
            data += MAGIC_BYTES
            position, part = end, part + 1
        return self._record(key, bytes(data))

    def read_all(self, keys: range) -> list[Record]:
        """The records ``keys``, read in one piece where they lie one after another in the file."""
        first, last = self._position(keys.start), self._position(keys.stop - 1)
        if last - first != len(keys) - 1 or np.any(self._next[first:last] != self._offsets[first + 1 : last + 1]):
            return [self.read(key) for key in keys]
        base = int(self._offsets[first])
        buffer = memoryview(self._pread(int(self._next[last]) - base, base))
        return [self.read(key, lambda size, offset: bytes(buffer[offset - base : offset - base + size]))
                for key in keys]

    def _record(self, key: int, data: bytes) -> Record:
        if len(data) < IRHEADER.size:
            raise self.error(key, f"{len(data)} bytes, too short for its {IRHEADER.size}-byte header")
        flag, label, first_id, second_id = IRHEADER.unpack_from(data)
        body = IRHEADER.size + 4 * flag
        if body > len(data):
            raise self.error(key, f"its header announces {flag} labels, more than its {len(data)} bytes hold")
        labels = np.frombuffer(data, dtype="<f4", count=flag, offset=IRHEADER.size).astype(np.float64)
        return Record(key, flag, label, first_id, second_id, labels, data[body:])

    # -- what the pack holds -------------------------------------------------------------------------------------

    def _contents(self) -> tuple[np.ndarray, np.ndarray, int, bool]:
        """(image keys, their labels, number of identities, whether record 0 is a header)."""
        header = self.read(0) if self._keys[0] == 0 else None
        if header is None or header.flag == 0:
            return self._scanned_labels()
        if header.flag < 2:
            raise self.error(0, f"a header record with {header.flag} label; expected two (the range "
                             "of the identity records)")
        start, end = (int(value) for value in header.labels[:2])
        if not 1 <= start <= end or header.labels[0] != start or header.labels[1] != end:
            raise self.error(0, f"header labels {header.labels[:2].tolist()} are not a range of "
                             "identity records after the images")
        if end == start:
            raise DataError(f"{self.path}: the header lists no identities")
        self._require_keys(range(1, end), "the header's record range")
        labels = np.full(start - 1, -1, dtype=np.int64)
        for identity, record in enumerate(self.read_all(range(start, end))):
            key = record.key
            first, last = (int(value) for value in record.labels[:2]) if record.flag >= 2 else (0, 0)
            if record.flag < 2 or not 1 <= first < last <= start or (labels[first - 1 : last - 1] != -1).any():
                raise self.error(key, f"identity {identity}'s image range "
                                 f"{record.labels.tolist()} is not a new range within the images 1…{start - 1}")
            labels[first - 1 : last - 1] = identity
        unlabelled = np.flatnonzero(labels < 0)
        if len(unlabelled):
            key = int(unlabelled[0]) + 1
            raise self.error(key, f"an image in no identity's range ({len(unlabelled)} such images)")
        return np.arange(1, start, dtype=np.int64), labels, end - start, True

    def _scanned_labels(self) -> tuple[np.ndarray, np.ndarray, int, bool]:
        """A pack without a header record: every record is an image, labelled by its own header (read here)."""
        labels = np.array([self.read(int(key)).first_label for key in self._keys])
        if not np.all((labels >= 0) & (labels == np.round(labels))):
            bad = int(np.argmax(~((labels >= 0) & (labels == np.round(labels)))))
            key = int(self._keys[bad])
            raise self.error(key, f"label {labels[bad]} is not an identity number (0, 1, 2, …)")
        return self._keys.copy(), labels.astype(np.int64), int(labels.max()) + 1, False

    def _require_keys(self, keys: range, what: str) -> None:
        if self._dense and keys.stop <= len(self._keys):
            return
        wanted = np.arange(keys.start, keys.stop, dtype=np.int64)
        found = np.searchsorted(self._keys, wanted)
        present = (found < len(self._keys)) & (self._keys[np.minimum(found, len(self._keys) - 1)] == wanted)
        if not present.all():
            missing = wanted[~present]
            raise DataError(f"{self.index_path}: has no record {missing[0]} ({len(missing)} of {what} missing)")

    def image(self, position: int) -> Image.Image:
        """The decoded image of ``images[position]``; its record's label must be the one its identity gives it."""
        key = int(self.images[position])
        record = self.read(key)
        if self.has_header and record.first_label != self.labels[position]:
            raise self.error(key, f"labelled {record.first_label:g}, but identity "
                             f"{self.labels[position]}'s range holds it")
        try:
            image = Image.open(io.BytesIO(record.payload))
            width, height = image.size
            if width * height > max_image_pixels():
                raise self.error(key, f"a {width}×{height} image, more pixels than lrbench decodes")
            image.load()
        except DECODE_ERRORS as exc:
            raise self.error(key, f"cannot decode its image ({exc})") from None
        return image

    def describe(self) -> dict:
        return {
            "format": "insightface RecordIO pack",
            "file": str(self.path),
            "index": str(self.index_path),
            "images": len(self.images),
            "identities": self.identities,
            "header_record": self.has_header,
        }


class RecordNames(Sequence):
    """The pack's images by name (``record 17``), without a list of millions of strings."""

    def __init__(self, keys: np.ndarray):
        self.keys = keys

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, position):
        if isinstance(position, slice):
            return [f"record {key}" for key in self.keys[position]]
        return f"record {self.keys[position]}"


class PackCrops:
    """The pack's images as an (N, H, W, 3) uint8 array of ``template`` crops, decoded when indexed.

    insightface's 112×112 ArcFace crops meet another template through the similarity between the two
    templates' landmark positions (``TemplateConversion``: crop/pad and uniform scale, never a stretch).
    Indexing with an array of positions decodes them on a few threads.
    """

    def __init__(self, pack: RecordPack, template: CropTemplate):
        self.pack, self.template = pack, template
        self.conversion = TemplateConversion(PACK_TEMPLATE, template, decided="insightface packs hold 112×112 "
                                             "ArcFace crops")
        self.shape = (len(pack.images), template.size[1], template.size[0], 3)
        self.dtype = np.dtype(np.uint8)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pool": None}

    def __len__(self) -> int:
        return self.shape[0]

    def crop(self, position: int) -> np.ndarray:
        with self.pack.image(position) as image:
            try:
                return self.conversion.apply(image)
            except AlignmentError as exc:
                key = int(self.pack.images[position])
                raise self.pack.error(key, str(exc)) from None

    def __getitem__(self, index) -> np.ndarray:
        positions = np.arange(*index.indices(len(self))) if isinstance(index, slice) else np.asarray(index)
        if positions.ndim == 0:
            return self.crop(int(positions))
        if self._pool is None or self._pool_pid != os.getpid():  # a forked copy's pool has no threads
            self._pool, self._pool_pid = ThreadPoolExecutor(DECODE_THREADS), os.getpid()
        crops = list(self._pool.map(self.crop, positions.tolist()))
        return np.stack(crops) if crops else np.empty((0, *self.shape[1:]), dtype=np.uint8)


def find_pack(data: Path) -> Path | None:
    """The pack ``--data`` names: a ``.rec`` file, or a folder holding ``train.rec`` (None: neither)."""
    if data.suffix == ".rec":
        return data
    if data.is_dir() and (data / "train.rec").is_file():
        return data / "train.rec"
    return None
