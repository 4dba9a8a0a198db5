"""Atomic writes: a reader never sees a torn file, an interrupted writer leaves the old one.

Each writer fills a private temporary file beside the target, syncs it, gives it the mode of a
plain open() (`paramgen.io.modes`) and renames it into place.
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


def _atomic(path: str | os.PathLike, write: Callable[[str], Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        publish(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
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
    return _atomic(path, lambda tmp: save_file(plain, tmp, metadata=metadata))


def save_torch(path: str | os.PathLike, obj: Any) -> Path:
    return _atomic(path, lambda tmp: torch.save(obj, tmp))
