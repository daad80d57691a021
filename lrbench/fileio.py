"""Writing outputs safely: atomic replacement with the user's umask, and exclusive locks on output paths.

Every file lrbench writes (results, caches, checkpoints, reports) goes through ``write_atomic``: a
temporary sibling is written, flushed to disk and renamed over the target, so a reader (or a killed
process) never sees half a file, and the file gets the permissions any other program would give it.
``OutputLock`` keeps two lrbench processes from writing the same output at once. A write the system
refuses (a full disk, a file system that takes no files) is a ``WriteError``: one line naming the file,
with nothing of the attempt left behind.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

from .errors import DataError, LrbenchError, UsageError
from .progress import warn


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _read_umask()
FILE_MODE = 0o666 & ~UMASK
DIR_MODE = 0o777 & ~UMASK

Content = str | bytes | Callable[[BinaryIO], None]


class WriteError(LrbenchError, OSError):
    """The system refused to write an output (no space left, a read-only or kernel file system): the CLI shows
    one line naming the file. Still an ``OSError``, so a cache that falls back to a temporary folder when it
    cannot write keeps doing so."""

    def __str__(self) -> str:
        return f"{self.filename}: cannot write it ({self.strerror})"


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an ``OSError`` raised while writing ``path`` into a ``WriteError`` naming it (a write to an open
    file reports a full disk without any file name)."""
    try:
        yield
    except WriteError:
        raise
    except OSError as exc:
        raise WriteError(exc.errno or errno.EIO, exc.strerror or str(exc), str(path)) from exc


def write_atomic(path: Path, content: Content) -> Path:
    """Replace ``path`` with ``content`` (text, bytes, or a function writing to a binary file) atomically.

    The temporary file lives beside the target (same file system, so the rename is atomic), is fsynced
    before the rename and removed if anything fails; the result has mode 0666 minus the umask. A write the
    system refuses is a ``WriteError`` naming ``path``.
    """
    path = Path(path)
    write_all_atomic({path: content})
    return path


def write_all_atomic(contents: Mapping[Path, Content]) -> None:
    """Write several files that belong together (``write_atomic`` for each): every one is complete in its
    temporary file before the first is renamed into place, so a full disk leaves all of them as they were."""
    written: list[tuple[Path, Path]] = []
    try:
        for path, content in contents.items():
            with writing(path):
                written.append((_write_temporary(Path(path), content), Path(path)))
        for tmp, path in written:
            with writing(path):
                os.replace(tmp, path)
    finally:
        for tmp, _ in written:
            tmp.unlink(missing_ok=True)


def _write_temporary(path: Path, content: Content) -> Path:
    """``content`` in a fresh temporary sibling of ``path``, flushed to disk; removed again if anything fails."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp's 0600 would make outputs private to whoever wrote them
        with os.fdopen(fd, "wb") as handle:
            if callable(content):
                content(handle)
            else:
                handle.write(content.encode() if isinstance(content, str) else content)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def read_text_lines(path: Path, what: str) -> list[str]:
    """A UTF-8 text file's lines as an editor numbers them: an initial byte-order mark dropped, ``\\r\\n`` or
    ``\\n`` ending a line (``str.splitlines`` would also split at form feeds and U+2028, shifting line numbers).
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what}: {exc.strerror or exc}") from exc
    data = data.removeprefix(codecs.BOM_UTF8)  # as Windows editors write it
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        byte = data[exc.start]
        raise DataError(f"{path}:{line}: not UTF-8 text (byte {byte:#04x}); save the {what} as UTF-8") from None
    return [line.removesuffix("\r") for line in text.split("\n")]


def sha256_file(path: Path | None) -> str | None:
    """SHA-256 of a file's bytes, read in blocks (weights files run to gigabytes); None when there is no file."""
    if path is None or not Path(path).is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def make_temp_dir(parent: Path, name: str) -> Path:
    """A fresh hidden folder beside ``parent/name`` (to be renamed into place), with the umask's mode.

    Its name, ``.NAME.tmp-PID-…``, carries the creator's pid, so a later process can tell the debris of a
    killed one (see ``dead_siblings``) from a folder another process is still filling.
    """
    with writing(Path(parent) / name):
        folder = Path(tempfile.mkdtemp(dir=parent, prefix=f".{name}.tmp-{os.getpid()}-"))
        folder.chmod(DIR_MODE)
    return folder


def swap_into_place(folder: Path, target: Path) -> Path:
    """Rename the complete ``folder`` to ``target``; an existing ``target`` is first renamed to
    ``.NAME.old-PID``, whose path is returned for the caller to remove once the swap is done.

    If the second rename fails, the previous ``target`` is put back and the first error is what is raised
    (a ``WriteError`` naming ``target``). A process killed between the two renames leaves the previous output
    whole in ``.NAME.old-PID`` (``dead_siblings(target, "old")`` finds it).
    """
    target = Path(target)
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    moved = False
    try:
        with writing(target):
            if target.exists():
                os.replace(target, old)
                moved = True
            os.replace(folder, target)
    except BaseException:
        if moved:  # only what this call moved away is put back, and a failure to do so never hides the cause
            try:
                os.replace(old, target)
            except OSError as exc:
                warn(f"{target}: cannot put the previous one back ({exc.strerror}); it is whole in {old}")
        raise
    return old


@contextlib.contextmanager
def built_in_place(target: Path) -> Iterator[Path]:
    """A fresh hidden sibling of ``target`` to fill. When the block ends normally it replaces ``target``
    (``swap_into_place``) and the previous ``target`` is removed (named in a warning if it cannot be);
    when it fails the sibling is removed and ``target`` is as it was. Nobody ever sees a half-built folder,
    and a parent folder made for it is removed again when the build fails."""
    target = Path(target)
    with removed_if_failed(target.parent):
        folder = make_temp_dir(target.parent, target.name)
        try:
            with named_as_target(folder, target):
                yield folder
            old = swap_into_place(folder, target)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    if old.exists():
        try:
            shutil.rmtree(old)
        except OSError as exc:
            warn(f"{old}: cannot remove the replaced {target.name} ({exc.strerror}); delete it by hand")


@contextlib.contextmanager
def named_as_target(folder: Path, target: Path) -> Iterator[None]:
    """Inside: a write that fails in the temporary ``folder`` (a path in it, or none: a write to an open file)
    is a ``WriteError`` naming the file where it would have ended up in ``target``; any other ``OSError``
    (reading an input) stays as it is."""
    try:
        yield
    except OSError as exc:
        inside = Path(os.path.abspath(folder))
        where = Path(os.path.abspath(exc.filename)) if exc.filename is not None else inside
        if where != inside and inside not in where.parents:
            raise
        raise WriteError(exc.errno or errno.EIO, exc.strerror or str(exc),
                         str(Path(target) / where.relative_to(inside))) from exc


@contextlib.contextmanager
def removed_if_failed(folder: Path) -> Iterator[None]:
    """Make ``folder`` (and its missing parents); if the block fails, remove again those of them this call
    made that are still empty, so a failed write leaves no empty folder behind."""
    folder = Path(folder)
    made = [path for path in (folder, *folder.parents) if not path.exists()]
    with writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        remove_empty(made)
        raise


def remove_empty(folders: list[Path]) -> None:
    """Remove each of ``folders`` (deepest first) that is an empty folder; never anything with content."""
    for path in sorted(folders, key=lambda path: len(path.parts), reverse=True):
        with contextlib.suppress(OSError):
            path.rmdir()


# Hidden leftovers of lrbench's own writers: write_atomic's temporary files, make_temp_dir's folders (and
# check_writable's probe), locks, and outputs swapped out by swap_into_place.
_OWN_DEBRIS = re.compile(r"\..+\.(tmp|lock|tmp-\d+-.*|old-\d+)", flags=re.DOTALL)


def is_debris(entry: Path) -> bool:
    """Whether ``entry`` is named as a leftover of lrbench's own writers (never a user's file)."""
    return bool(_OWN_DEBRIS.fullmatch(Path(entry).name))


def dead_siblings(target: Path, kind: str = "tmp") -> list[Path]:
    """The ``.NAME.KIND-PID…`` siblings of ``target`` (``make_temp_dir``'s folders for kind ``tmp``) whose
    process is gone: the debris of a writer that was killed, safe to remove."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    pattern = re.compile(rf"\.{re.escape(target.name)}\.{re.escape(kind)}-(\d+)(-.*)?", flags=re.DOTALL)
    found = ((entry, pattern.fullmatch(entry.name)) for entry in target.parent.iterdir())
    return sorted(entry for entry, match in found if match and not _process_alive(int(match.group(1))))


def _process_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (one of another user counts)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_writable(target: Path, option: str = "--out", folder: bool = True) -> None:
    """Refuse, before any work, an output path that could not be written: a file where a folder is needed
    (or the reverse), a file among its parents, or a parent the user may not write in or whose file system
    takes no new files (``/proc``, ``/sys``, a read-only or full disk).

    A cheap look at the file system right after option parsing, so a typo costs seconds, not a whole
    evaluation; the real write can still fail later (a disk that fills meanwhile), as a ``WriteError``.
    """
    target = Path(target)
    if target.is_symlink() or target.exists():
        if folder and not target.is_dir():
            raise UsageError(f"{option} {target}: is a file, not a folder; choose another path")
        if not folder and target.is_dir():
            raise UsageError(f"{option} {target}: is a folder; give a file name")
        if target.is_dir() and not os.access(target, os.W_OK | os.X_OK):
            raise UsageError(f"{option} {target}: cannot write in this folder (permission denied)")
    ancestor = next(parent for parent in (target.parent, *target.parent.parents) if parent.exists())
    if not ancestor.is_dir():
        raise UsageError(f"{option} {target}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {target}: cannot create anything in {ancestor} (permission denied)")
    for place in (ancestor, *([target] if folder and target.is_dir() else [])):
        problem = _cannot_create_in(place)
        if problem:
            raise UsageError(f"{option} {target}: cannot create anything in {place} ({problem})")


def _cannot_create_in(folder: Path) -> str | None:
    """Why nothing can be made in ``folder``, found by making (and at once removing) an empty hidden folder
    there: the permission bits say yes to root in ``/proc`` and ``/sys``, whose file systems take no files."""
    try:
        os.rmdir(tempfile.mkdtemp(dir=folder, prefix=f".lrbench-probe.tmp-{os.getpid()}-"))
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def lock_path(target: Path) -> Path:
    """The lock file of an output path: a hidden sibling, so it exists before and after the output does."""
    target = Path(target)
    return target.with_name(f".{target.name}.lock")


class OutputLock:
    """An exclusive lock on an output path, held for the life of a run.

    The lock file holds the owner's pid, host, command and start time, for the message a second process
    gets. It is an ``flock``: the kernel releases it when its owner dies, so a lock file left by a killed
    process is stale by construction and is simply taken over. Folders made for the lock file, and an
    output folder that is still empty when the locked block fails, are removed on release.
    """

    def __init__(self, target: Path, option: str = "--out", command: str = ""):
        self.target, self.option, self.command = Path(target), option, command
        self.path = lock_path(self.target)
        self._fd: int | None = None
        self._made: list[Path] = []

    def acquire(self) -> OutputLock:
        self._made = [path for path in (self.target, *self.target.parents) if not path.exists()]
        try:
            with writing(self.path):
                self._fd = self._locked_file()
                owner = {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "command": self.command,
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                }
                os.ftruncate(self._fd, 0)
                os.write(self._fd, (json.dumps(owner) + "\n").encode())
        except BaseException:
            self.release(failed=True)  # no lock file, empty or not, and no folder made for it stays behind
            raise
        return self

    def _locked_file(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise UsageError(f"{self.option} {self.target}: in use by {self._owner()}; wait for it to finish "
                                 f"or choose another path") from None
            # The holder before us may have removed the file between our open and our flock: retry on the new one.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)

    def _owner(self) -> str:
        try:
            owner = json.loads(self.path.read_text())
            return (
                f"lrbench process {owner['pid']} on {owner['host']} (started {owner['started']}"
                + (f": {owner['command']}" if owner.get("command") else "")
                + f"; lock {self.path})"
            )
        except (OSError, ValueError, KeyError, TypeError):
            return f"another lrbench process (lock {self.path})"

    def release(self, failed: bool = False) -> None:
        """Unlock; after a failure, also remove the folders the lock made and an output folder left empty."""
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        if failed:
            remove_empty(self._made)

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, kind, *exc) -> None:
        self.release(failed=kind is not None)



# The image files lrbench finds in folders. Files with these suffixes are taken as images without being opened
# (a damaged one is named when it is decoded); any other file is an image when Pillow recognises its content as
# one of _CONTENT_FORMATS, whatever its name: GIF or TIFF files with no suffix or an odd one, such as the Yale
# faces' ``subject01.glasses``. Text files (lists, landmarks, READMEs) are no image of any of these formats.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".pbm", ".bmp", ".webp")
_CONTENT_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "TIFF", "BMP", "PPM", "WEBP")  # formats with a signature


def image_files(root: Path) -> list[str]:
    """The images under ``root`` at any depth, as sorted '/'-separated paths relative to it, recognised by suffix
    or by content; hidden files and folders (editors' and tools' debris) are skipped."""
    from PIL import Image, UnidentifiedImageError

    def holds_image(path: Path) -> bool:
        try:
            with Image.open(path) as image:  # reads the header only
                return image.format in _CONTENT_FORMATS
        except Image.DecompressionBombError:  # an image, and a huge one: decoding it refuses it by name
            return True
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            return False

    root = Path(root)
    found = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES or holds_image(path):
            found.append(relative.as_posix())
    return sorted(found)
