"""A full disk, simulated where the system reports it: ``os.fsync`` (a file system with delayed allocation
reports a full disk when the data is flushed) and ``os.write`` on files under one folder fail with ENOSPC."""

import errno
import os
from pathlib import Path


def fill_disk(monkeypatch, folder: Path, calls: tuple[str, ...] = ("fsync", "write"), after: int = 0) -> None:
    """From the ``after``-th call on (0: the first), ``calls`` on files under ``folder`` raise ENOSPC; calls
    on other files (outputs of pytest, the cache folder) go through."""
    folder = Path(folder).resolve()
    seen = {"calls": 0}

    def under_folder(fd: int) -> bool:
        try:
            return folder in Path(os.readlink(f"/proc/self/fd/{fd}")).parents
        except OSError:
            return False

    def failing(real):
        def call(fd, *args):
            if under_folder(fd if isinstance(fd, int) else fd.fileno()):
                seen["calls"] += 1
                if seen["calls"] > after:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(fd, *args)

        return call

    for name in calls:
        monkeypatch.setattr(os, name, failing(getattr(os, name)))
