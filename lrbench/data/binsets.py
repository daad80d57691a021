"""insightface's ``.bin`` verification sets (lfw.bin, cfp_fp.bin, agedb_30.bin, calfw.bin, cplfw.bin):
read safely, run as a protocol, and written from any pairs protocol.

A ``.bin`` is a pickle of ``(images, issame)``: a list of 2·n encoded images (JPEG or PNG bytes of aligned
112×112 ArcFace crops) and n booleans; pair i is images 2i and 2i+1. insightface splits the pairs into 10
folds in file order (sklearn's ``KFold(10)``: consecutive blocks, the first ``n % 10`` one pair longer).

A pickle can call any function while it loads, so ``pickle.load`` on a downloaded file runs whatever its
author chose. Here the file is read by an unpickler whose only globals are inert stand-ins for the numpy
names that describe a boolean array (they record what the file says; the booleans are then made from its
bytes) and a Latin-1 text-to-bytes step (how Python 3 pickles bytes at old protocols). Any other global is
refused before it is called, with the file and the global it asked for: nothing in the file runs.

To run, the images are written once into a folder of the crop cache (named after the file's SHA-256, made
in a temporary folder and renamed into place), and the pairs become a ``PairSet`` over that folder whose
images count as aligned crops. Image ``pair/1.jpg`` and ``pair/2.jpg`` share a folder, so the identity
bootstrap (which takes an image's folder as its person) resamples pairs: a ``.bin`` names nobody.
"""

from __future__ import annotations

import atexit
import hashlib
import io
import pickle
import pickletools
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError, UsageError
from ..fileio import built_in_place, dead_siblings, writing
from ..progress import ProgressMode, progress_bar, warn
from ..specs import ARCFACE_112x112, PairSet, ProtocolSpec
from .crops import max_image_pixels

FOLDS = 10
_ALLOWED = "bytes, lists, tuples, booleans and numpy boolean arrays"


class _Refused(pickle.UnpicklingError):
    """The pickle asked for something a ``.bin`` never needs."""


# A numpy array in a pickle is ``_reconstruct(ndarray, (0,), b'b')`` filled by ``__setstate__((1, shape,
# dtype('b1', …), fortran, raw bytes))``, or at protocol 5 ``_frombuffer(bytes, dtype, shape, order)``; a numpy
# boolean is ``scalar(dtype, b'\x01')``. The globals below stand in for those numpy functions: inert objects
# that record what the file says, so no numpy code sees the file's values (``numpy.ndarray`` itself, called
# with a dtype and a buffer, would read raw memory). ``_Array.values`` then checks the record and makes the
# array from the bytes.


class _NdarrayName:
    """What ``numpy.ndarray`` resolves to: a name ``_reconstruct`` accepts, refused if called."""

    def __call__(self, *args):
        raise _Refused("a call of numpy.ndarray (arrays come only from numpy's _reconstruct or _frombuffer)")


_NDARRAY = _NdarrayName()


class _Dtype:
    """``numpy.dtype(code, align, copy)`` for booleans (``'b1'``) only."""

    def __init__(self, code, *flags):
        code = code.decode("ascii", "replace") if isinstance(code, bytes) else code
        if code != "b1":
            raise _Refused(f"numpy.dtype({code!r}): a .bin's arrays must be boolean")

    def __setstate__(self, state):
        """Byte order and flags: nothing to keep for one-byte booleans."""


class _Array:
    """A numpy array as the file describes it: shape, dtype and raw bytes, checked by ``values``."""

    def __init__(self, cls=None, shape=(0,), typecode=b"b"):
        if cls is not _NDARRAY:
            raise _Refused(f"numpy's _reconstruct of {type(cls).__name__}: only plain numpy arrays are allowed")
        self.shape, self.dtype, self.data = shape, None, b""

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused("a numpy array state that is not (version, shape, dtype, fortran, data)")
        self.shape, self.dtype, _, self.data = state[-4:]

    def values(self) -> np.ndarray | None:
        """The booleans, or None when the record is not one-dimensional booleans of matching length."""
        data = bytes(self.data) if isinstance(self.data, (bytes, bytearray)) else None
        shape_ok = isinstance(self.shape, tuple) and len(self.shape) == 1 and type(self.shape[0]) is int
        if not (isinstance(self.dtype, _Dtype) and data is not None and shape_ok and len(data) == self.shape[0]):
            return None
        if data.strip(b"\x00\x01"):
            return None
        return np.frombuffer(data, dtype=np.uint8).astype(bool)


def _frombuffer(buffer, dtype, shape, order="C"):
    """Protocol 5's form of an array."""
    array = _Array(_NDARRAY)
    array.__setstate__((shape, dtype, False, buffer))
    return array


def _scalar(dtype, data=b""):
    """A numpy boolean (``np.bool_``), as some issame lists hold: returned as a bool."""
    if not isinstance(dtype, _Dtype) or data not in (b"\x00", b"\x01"):
        raise _Refused("a numpy scalar that is not a boolean")
    return data == b"\x01"


def _latin1_bytes(text, encoding="latin1"):
    """How Python 3 pickles bytes at protocols 0-2: ``_codecs.encode(text, 'latin1')``."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused(f"_codecs.encode(..., {encoding!r}): only Latin-1 text to bytes is allowed")
    return text.encode("latin1")


_MULTIARRAY = ("numpy.core.multiarray", "numpy._core.multiarray")
_NUMERIC = ("numpy.core.numeric", "numpy._core.numeric")
_GLOBALS = {
    **{(module, "_reconstruct"): _Array for module in _MULTIARRAY},
    **{(module, "scalar"): _scalar for module in _MULTIARRAY},
    **{(module, "_frombuffer"): _frombuffer for module in _NUMERIC},
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _Dtype,
    ("_codecs", "encode"): _latin1_bytes,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only ``_GLOBALS`` (see "Restricting Globals" in the pickle documentation)."""

    def find_class(self, module, name):
        found = _GLOBALS.get((module, name))
        if found is None:
            raise _Refused(f"the file asks for {module}.{name}")
        return found


def read_bin(path: Path) -> tuple[list[bytes], np.ndarray, str]:
    """The encoded images, the per-pair booleans and the file's SHA-256; any other content is one
    DataError naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read .bin file: {exc.strerror or exc}") from None
    _check_claims(path, data)
    stream = io.BytesIO(data)
    try:
        loaded = _RestrictedUnpickler(stream, encoding="bytes").load()
    except _Refused as exc:
        raise DataError(f"{path}: refused: {exc}; a .bin holds only {_ALLOWED}, and nothing in it was run") from None
    except Exception as exc:  # a broken pickle raises anything from EOFError to MemoryError
        if isinstance(exc, EOFError) or "truncated" in str(exc):
            raise DataError(f"{path}: truncated: the file ends inside its pickle (an incomplete download?)") from None
        raise DataError(f"{path}: not an insightface .bin (pickle) file: {type(exc).__name__}: {exc}") from None
    if stream.tell() != len(data):
        raise DataError(f"{path}: {len(data) - stream.tell():,} bytes after the end of its pickle; not a .bin file")
    images, issame = _check_content(path, loaded)
    return images, issame, hashlib.sha256(data).hexdigest()


class _Claim(Exception):
    """A length in the pickle larger than the whole file."""


class _ClaimChecked(io.BytesIO):
    """The file's bytes, refusing a read of more bytes than the file holds (before anything is allocated)."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.size = len(data)

    def read(self, size: int | None = -1) -> bytes:
        if size is not None and size > self.size:
            raise _Claim(size, self.tell())
        return super().read(size)


def _check_claims(path: Path, data: bytes) -> None:
    """Refuse a pickle that claims an object larger than the file (the unpickler would first try to allocate
    it: 10¹² bytes end in a bare MemoryError). Its opcodes are walked without building anything; other damage
    is left for the unpickler to name."""
    try:
        for _ in pickletools.genops(_ClaimChecked(data)):
            pass
    except _Claim as claim:
        size, position = claim.args
        raise DataError(f"{path}: at byte {position:,} its pickle claims an object of {size:,} bytes, but the whole "
                        f"file holds {len(data):,} bytes; a damaged or hostile .bin") from None
    except Exception:  # any other damage: the unpickler reports it in read_bin's words
        pass


def _check_content(path: Path, loaded) -> tuple[list[bytes], np.ndarray]:
    if not isinstance(loaded, (tuple, list)) or len(loaded) != 2:
        raise DataError(f"{path}: expected a pair (images, issame), got {_what(loaded)}")
    images, issame = loaded
    if not isinstance(images, (list, tuple)):
        raise DataError(f"{path}: the images must be a list of encoded images, got {_what(images)}")
    for index, image in enumerate(images):
        if type(image) is not bytes:
            raise DataError(f"{path}: image {index} is {_what(image)}, not encoded image bytes")
    if isinstance(issame, _Array):
        values = issame.values()
        if values is None:
            raise DataError(f"{path}: issame must be one boolean per pair, got a numpy array that is not a "
                            "one-dimensional boolean array")
        issame = values
    elif isinstance(issame, (list, tuple)):
        for index, value in enumerate(issame):
            if type(value) is not bool:
                raise DataError(f"{path}: issame entry {index} is {_what(value)}, not a boolean")
        issame = np.asarray(issame, dtype=bool)
    else:
        raise DataError(f"{path}: issame must be a list of booleans, got {_what(issame)}")
    if len(images) != 2 * len(issame):
        raise DataError(f"{path}: {len(images)} images for {len(issame)} pairs; a .bin holds 2 images per pair")
    if len(issame) < FOLDS:
        raise DataError(f"{path}: {len(issame)} pairs; a .bin needs at least {FOLDS} (one per fold)")
    return list(images), issame


def _what(value) -> str:
    if isinstance(value, _Array):
        return "a numpy array"
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__} of length {len(value)}"
    return type(value).__name__


def fold_ids(pairs: int, folds: int = FOLDS) -> np.ndarray:
    """insightface's folds: consecutive blocks in file order, the first ``pairs % folds`` one pair longer."""
    return np.concatenate([np.full(len(block), k) for k, block in enumerate(np.array_split(np.arange(pairs), folds))])


def _suffix(image: bytes) -> str:
    if image.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    return ".png" if image.startswith(b"\x89PNG\r\n\x1a\n") else ".img"


def image_names(images: list[bytes]) -> list[str]:
    """Where each image goes: the two images of pair i in a folder of their own (``000001/1.jpg``), so that
    an image's folder, lrbench's identity, is its pair."""
    width = len(str(len(images) // 2))
    return [f"{i // 2 + 1:0{width}d}/{i % 2 + 1}{_suffix(image)}" for i, image in enumerate(images)]


def _check_image(path: Path, index: int, image: bytes, limit: int) -> None:
    """Decode one image now, so that a broken one is named by its place in the .bin, not the cache path."""
    where = f"{path}: image {index} (pair {index // 2 + 1}, {'first' if index % 2 == 0 else 'second'})"
    try:
        with Image.open(io.BytesIO(image)) as decoded:
            width, height = decoded.size
            if width * height > limit:
                raise DataError(f"{where}: {width}×{height} pixels, more than the limit of {limit:,} "
                                "(raise it with the environment variable LRBENCH_MAX_IMAGE_PIXELS)")
            decoded.load()
    except DataError:
        raise
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError … for bad bytes
        raise DataError(f"{where}: not a decodable image ({exc})") from None


def _complete(folder: Path, names: list[str], images: list[bytes]) -> bool:
    """Whether an earlier run unpacked every image (sizes checked: cheap, and a cut file shows)."""
    try:
        return all((folder / name).stat().st_size == len(image) for name, image in zip(names, images))
    except OSError:
        return False


def extract(
    path: Path, images: list[bytes], digest: str, cache_dir: Path | None, show_progress: ProgressMode | bool = "bar"
) -> Path:
    """The folder holding the images of ``path``: found in the cache, or decoded-checked and written there
    (without a cache, into a temporary folder removed when lrbench exits)."""
    names = image_names(images)
    target = Path(cache_dir) / f"bin-{digest[:24]}" if cache_dir else None
    if target is not None and _complete(target, names, images):
        return target
    if target is not None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            for debris in dead_siblings(target):
                shutil.rmtree(debris, ignore_errors=True)
            with built_in_place(target) as folder:
                _unpack(path, names, images, folder, show_progress)
            return target
        except OSError as exc:  # a cache folder that cannot take the images: a temporary one can
            warn(f"crop cache {target.parent}: cannot write there ({exc.strerror or exc}); unpacking "
                 f"{Path(path).name} into a temporary folder")
    with writing(Path(tempfile.gettempdir())):
        folder = Path(tempfile.mkdtemp(prefix="lrbench-bin-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    try:
        with writing(folder):
            _unpack(path, names, images, folder, show_progress)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def _unpack(path: Path, names: list[str], images: list[bytes], folder: Path, show_progress) -> None:
    """Write each image of ``path`` into ``folder`` after checking it decodes; a write the system refuses is
    the ``OSError`` it raised, for the caller to fall back on."""
    limit = max_image_pixels()
    with progress_bar(f"unpack {Path(path).name}", len(images), show_progress) as steps:
        for index, (name, image) in enumerate(zip(names, images)):
            _check_image(path, index, image, limit)
            (folder / name).parent.mkdir(exist_ok=True)
            (folder / name).write_bytes(image)
            steps.advance()


def load_bin(path: Path, cache_dir: Path | None, show_progress: ProgressMode | bool = "bar") -> PairSet:
    """A .bin as a protocol's pairs: pairs 2i, 2i+1, insightface's 10 folds, aligned crops."""
    images, issame, digest = read_bin(path)
    root = extract(path, images, digest, cache_dir, show_progress)
    names = image_names(images)
    count = len(issame)
    return PairSet(
        root=root,
        images=names,
        first=np.arange(0, 2 * count, 2, dtype=np.int64),
        second=np.arange(1, 2 * count, 2, dtype=np.int64),
        same=issame,
        folds=fold_ids(count),
        source=Path(path),
        names=[(names[2 * i], names[2 * i + 1]) for i in range(count)],
        aligned=True,
        aligned_template=ARCFACE_112x112.name,
    )


def find_bin(name: str, data: Path | None) -> Path:
    """``--protocol FILE.bin``: the path as given, else in ``--data`` (where insightface's training sets
    keep their .bin files)."""
    for candidate in (Path(name), *([Path(data) / name] if data else [])):
        if candidate.is_file():
            return candidate
    where = f" or in --data {data}" if data else ""
    raise UsageError(f"--protocol {name}: no such file{where}")


def bin_protocol(name: str, cache_dir: Path | None, show_progress: ProgressMode | bool = "bar") -> ProtocolSpec:
    """A protocol for one .bin file, found when loaded: as given, else in the data folder; ``--pairs`` is
    refused (the file holds its pairs)."""

    def load(data: Path | None, pairs: Path | None = None) -> PairSet:
        path = find_bin(name, data)
        if pairs is not None:
            raise UsageError(f"--pairs {pairs}: {path} holds its own pairs; leave out --pairs")
        return load_bin(path, cache_dir, show_progress)

    return ProtocolSpec(
        name=Path(name).name,
        load=load,
        description=f"insightface verification set {Path(name).name}: pairs of aligned 112×112 crops, "
        f"{FOLDS} folds in file order",
    )


# ``lrbench bin make``


def encode(crop: np.ndarray, image_format: str, quality: int) -> bytes:
    """One crop as PNG (lossless: a run on the .bin sees exactly these pixels) or JPEG."""
    buffer = io.BytesIO()
    if image_format == "png":
        Image.fromarray(crop).save(buffer, "PNG")
    else:
        Image.fromarray(crop).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def bin_payload(pairs: PairSet, encoded: list[bytes]) -> tuple[list[bytes], list[bool]]:
    """What a .bin pickles for ``pairs`` (``encoded``: one per unique image): images and issame with the
    pairs in fold order. An image in several pairs is one bytes object, which pickle stores once."""
    order = np.argsort(pairs.folds, kind="stable")
    images = [encoded[index] for pair in order for index in (pairs.first[pair], pairs.second[pair])]
    return images, [bool(pairs.same[pair]) for pair in order]


def check_fold_order(pairs: PairSet, protocol: str, out: Path) -> None:
    """Warn when insightface's 10 blocks in file order will not be the protocol's folds."""
    ordered = np.sort(pairs.folds, kind="stable")
    if len(ordered) < FOLDS or not np.array_equal(ordered, fold_ids(len(ordered))):
        warn(f"{protocol}: its folds are not {FOLDS} equal blocks, so the {FOLDS} folds that insightface tools "
             f"and lrbench take in {out} (consecutive blocks in file order) are not the protocol's")


def check_bin_target(out: Path, overwrite: bool) -> None:
    """``--overwrite`` replaces a .bin verification set, never another file that happens to be there."""
    if not out.exists():
        return
    try:
        read_bin(out)
    except DataError:
        raise UsageError(f"--out {out}: already exists and is not a .bin verification set, so lrbench will not "
                         "replace it; choose another file") from None
    if not overwrite:
        raise UsageError(f"--out {out}: already exists; choose another file or pass --overwrite")
