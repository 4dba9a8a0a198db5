"""The error paramgen raises for an output path it cannot use, and one line for an OS fault."""

from __future__ import annotations

import errno


class OutputError(ValueError):
    """An output path paramgen cannot or must not use; the message names it and the way out."""


def describe_os_error(exc: OSError) -> str:
    """One line for an environment fault: what failed, on which path, and what to do."""
    # For a rename (how every write here ends) the target is what the user named; the source
    # is a temporary file they never saw.
    where = exc.filename2 if exc.filename2 is not None else exc.filename
    where = "a file" if where is None else where
    hints = {
        errno.ENOSPC: f"no space left on the disk while writing {where}; free space or choose "
                      "another output folder",
        errno.EDQUOT: f"disk quota exceeded while writing {where}; free space or choose another "
                      "output folder",
        errno.EACCES: f"permission denied: {where}; choose another path or fix its permissions",
        errno.EPERM: f"operation not permitted: {where}; choose another path or fix its "
                     "permissions",
        errno.EROFS: f"{where} is on a read-only file system; choose another output folder",
        errno.ENOTDIR: f"{where}: a part of this path is a file, not a folder",
        errno.EISDIR: f"{where} is a folder, but a file was expected",
        errno.ENOENT: f"{where} does not exist",
        errno.EEXIST: f"{where} already exists",
        errno.ENAMETOOLONG: f"file name too long: {where}",
    }
    return hints.get(exc.errno, f"{where}: {exc.strerror or exc}")
