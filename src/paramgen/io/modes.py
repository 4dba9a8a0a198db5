"""File modes: what paramgen's outputs are opened to.

A file paramgen writes gets the mode a plain ``open()`` would give it under the user's umask
(0644 under umask 0022), so a colleague on a shared machine can read results. Writes go through a
temporary file made by ``mkstemp``, which is private (0600) while it fills; `publish` widens it
to that mode just before the rename that makes it the output. Locks and temporaries that never
become outputs stay private.
"""

from __future__ import annotations

import os
import threading

_UMASK_LOCK = threading.Lock()


def umask() -> int:
    """The process's umask, read without changing it where the system allows."""
    try:
        # Linux >= 4.7 reports it; reading it is free of the race that setting it has.
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    # Elsewhere the only way to read it is to set it and set it back; the lock keeps two of
    # paramgen's writers from interleaving, and the interim mask is the stricter 0o077.
    with _UMASK_LOCK:
        old = os.umask(0o077)
        os.umask(old)
    return old


def file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file now: 0o666 less the umask."""
    return 0o666 & ~umask()


def publish(path: str | os.PathLike) -> None:
    """Give temporary file `path`, about to be renamed into place, the mode of a plain open()."""
    try:
        os.chmod(path, file_mode())
    except OSError:
        # A file system without modes (some network and FUSE mounts) refuses chmod; the output
        # is still worth having, with whatever mode that file system gives.
        pass
