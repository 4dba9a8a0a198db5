"""Atomic, durable writes: a reader never sees a torn file, an interrupted writer leaves the old
one, and a completed write survives a power cut.

Each writer fills a private temporary file beside the target, syncs it (`os.fsync`: its bytes
are on disk before its name is), gives it the mode of a plain open() (`paramgen.io.modes`),
renames it into place and syncs the folder (the rename itself is on disk before the writer
returns, so a write that returned is never undone by a crash). Both syncs are one system call
each on files of kilobytes to megabytes; paramgen's writes are checkpoints, manifests and
states, never a stream of small records, so the cost does not show.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from safetensors.torch import save_file

from paramgen.io.modes import publish
from paramgen.io.written import log_written


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make the renames and deletions in ``folder`` durable (a no-op where folders cannot be
    opened for syncing, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse to sync a folder; the renames stand anyway
        pass
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a closed file's bytes to disk (for writers that open and close it themselves)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic(path: str | os.PathLike, write: Callable[[str], Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)  # the writer leaves the file's bytes synced
        publish(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_folder(path.parent)
    log_written(path)
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    return _atomic(path, write)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_safetensors(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor],
                     metadata: dict[str, str] | None = None) -> Path:
    # safetensors refuses shared or non-contiguous storage; a state dict often has both.
    plain = {k: v.detach().contiguous().clone() for k, v in tensors.items()}

    def write(tmp: str) -> None:
        save_file(plain, tmp, metadata=metadata)  # opens and closes the file itself
        fsync_file(tmp)

    return _atomic(path, write)
