"""Writing outputs safely: atomic replacement with the user's umask, and exclusive locks on output paths.

Every file lrbench writes (results, caches, checkpoints, reports) goes through ``write_atomic``: a
temporary sibling is written, flushed to disk and renamed over the target, so a reader (or a killed
process) never sees half a file, and the file gets the permissions any other program would give it.
``OutputLock`` keeps two lrbench processes from writing the same output at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import UsageError


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _read_umask()
FILE_MODE = 0o666 & ~UMASK
DIR_MODE = 0o777 & ~UMASK


def write_atomic(path: Path, content: str | bytes | Callable[[BinaryIO], None]) -> Path:
    """Replace ``path`` with ``content`` (text, bytes, or a function writing to a binary file) atomically.

    The temporary file lives beside the target (same file system, so the rename is atomic), is fsynced
    before the rename and removed if anything fails; the result has mode 0666 minus the umask.
    """
    path = Path(path)
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
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def make_temp_dir(parent: Path, name: str) -> Path:
    """A fresh hidden folder beside ``parent/name`` (to be renamed into place), with the umask's mode."""
    folder = Path(tempfile.mkdtemp(dir=parent, prefix=f".{name}.tmp-"))
    folder.chmod(DIR_MODE)
    return folder


def lock_path(target: Path) -> Path:
    """The lock file of an output path: a hidden sibling, so it exists before and after the output does."""
    target = Path(target)
    return target.with_name(f".{target.name}.lock")


class OutputLock:
    """An exclusive lock on an output path, held for the life of a run.

    The lock file holds the owner's pid, host, command and start time, for the message a second process
    gets. It is an ``flock``: the kernel releases it when its owner dies, so a lock file left by a killed
    process is stale by construction and is simply taken over.
    """

    def __init__(self, target: Path, option: str = "--out", command: str = ""):
        self.target, self.option, self.command = Path(target), option, command
        self.path = lock_path(self.target)
        self._fd: int | None = None

    def acquire(self) -> OutputLock:
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
                break
            os.close(fd)
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": self.command,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(owner) + "\n").encode())
        self._fd = fd
        return self

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

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

