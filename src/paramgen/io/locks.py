"""FolderLock: one writer per folder at a time, across processes."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from paramgen.io.errors import OutputError

LOCK_FILE = ".paramgen.lock"
_HELD: set[str] = set()  # folders this process holds a lock on


class FolderLock:
    """An exclusive lock on a folder for one writer, across processes (``flock`` on
    ``FOLDER/.paramgen.lock``). The operating system drops it when the process ends, however it
    ends, so a killed writer never leaves a stale lock. A second writer waits (saying so on
    stderr) unless ``wait=False``, which raises OutputError instead. Taking a lock this process
    already holds raises at once rather than waiting for itself forever."""

    def __init__(self, folder: str | os.PathLike, wait: bool = True) -> None:
        self.folder = Path(folder)
        self.wait = wait
        self._fd: int | None = None
        self._key = ""

    def acquire(self) -> "FolderLock":
        try:
            import fcntl
        except ImportError:  # not POSIX: no cross-process lock available
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        self._key = os.path.realpath(self.folder)
        if self._key in _HELD:
            raise OutputError(f"{self.folder} is already open for writing in this process; "
                              "close the other writer first")
        fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                other = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
                if not self.wait:
                    raise OutputError(f"{self.folder} is being written by another paramgen "
                                      f"process (pid {other}); wait for it to finish") from None
                print(f"paramgen: waiting for another process (pid {other}) writing to "
                      f"{self.folder} ...", file=sys.stderr, flush=True)
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        _HELD.add(self._key)
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        os.close(self._fd)  # closing the descriptor drops the flock
        self._fd = None
        _HELD.discard(self._key)

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()
