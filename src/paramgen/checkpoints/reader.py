"""paramgen's one safetensors reader: a file's layout from its header alone, a whole file, or one
tensor of it, each failing with a CheckpointError that names the file (and key) at fault.

Every part of paramgen that reads a ``.safetensors`` file it did not just write (CheckpointSet,
folder and PEFT imports) goes through here, so a truncated or corrupt file reads the same
everywhere.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from paramgen import io
from paramgen.checkpoints.format import CheckpointError, Spec

__all__ = ["read_safetensors", "read_safetensors_header", "read_safetensors_tensor"]


def read_safetensors_header(path: str | os.PathLike) -> Spec:
    """Key -> (shape, dtype) of a safetensors file from its header alone (no tensor data read).

    Parsing the header ourselves lets `load` check every file's layout cheaply and report a
    truncated or corrupt file by name before any training starts.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: not a safetensors file (only {size} bytes)")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                raise CheckpointError(f"{path}: corrupt safetensors header (declares {n} header "
                                      f"bytes, file has {size})")
            header = json.loads(f.read(n))
    except CheckpointError:
        raise
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable safetensors file ({exc})") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header")
    data_len = size - 8 - n
    spec: Spec = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        try:
            dtype = io.SAFETENSORS_DTYPES[entry["dtype"]]
            shape = tuple(int(s) for s in entry["shape"])
            start, end = (int(o) for o in entry["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: corrupt safetensors header entry for key {key!r}") \
                from exc
        if end > data_len or start > end:
            raise CheckpointError(f"{path}: truncated file: key {key!r} needs bytes up to {end}, "
                                  f"only {data_len} present")
        spec[key] = (shape, dtype)
    return spec


def read_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file (on the CPU); FileNotFoundError if it is not there, a
    CheckpointError naming it if it is not a readable safetensors file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint file {path} does not exist")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt data
        raise CheckpointError(f"{path}: unreadable safetensors file ({exc})") from exc


def read_safetensors_tensor(path: str | os.PathLike, key: str) -> torch.Tensor:
    """Tensor `key` of a safetensors file, reading no other tensor's data."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.get_tensor(key)
    except Exception as exc:  # safetensors raises its own error types for corrupt data
        raise CheckpointError(f"{path}: cannot read key {key!r} ({exc})") from exc
