"""Atomic file writes: a reader never sees a torn file, an interrupted writer leaves the old one."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import save_file


def _atomic(path: str | os.PathLike, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
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


# Data types: the one table of safetensors header codes, and the names manifests and generator
# configs spell dtypes with. Built with getattr so an older torch that lacks a type (float8,
# unsigned ints) still imports this module.
SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    code: getattr(torch, name)
    for code, name in [
        ("F64", "float64"), ("F32", "float32"), ("F16", "float16"), ("BF16", "bfloat16"),
        ("I64", "int64"), ("I32", "int32"), ("I16", "int16"), ("I8", "int8"),
        ("U8", "uint8"), ("U16", "uint16"), ("U32", "uint32"), ("U64", "uint64"),
        ("BOOL", "bool"), ("F8_E4M3", "float8_e4m3fn"), ("F8_E5M2", "float8_e5m2"),
        ("C64", "complex64"),
    ]
    if hasattr(torch, name)
}
_CODE_OF = {dtype: code for code, dtype in SAFETENSORS_DTYPES.items()}


def dtype_name(dtype: torch.dtype) -> str:
    """'float32' for torch.float32: the spelling manifests and configs use."""
    return str(dtype).removeprefix("torch.")


def parse_dtype(name: str, where: str = "dtype") -> torch.dtype:
    """Inverse of `dtype_name`; a ValueError naming `where` for anything else."""
    dt = getattr(torch, name, None) if isinstance(name, str) else None
    if not isinstance(dt, torch.dtype):
        raise ValueError(f"{where}: unknown dtype {name!r}")
    return dt


class SafetensorsStreamWriter:
    """Writes a ``.safetensors`` file whose tensors arrive in pieces, in file order.

    The header (names, dtypes, shapes, offsets) is written first from ``entries``; then
    :meth:`write` appends each tensor's data, a piece at a time, in the order of ``entries``.
    Nothing but the current piece is held in memory. The file appears at ``path`` only when
    :meth:`close` finds every byte written (atomic, like every other write here); on an error or
    :meth:`abort` the temporary file is removed.
    """

    def __init__(self, path: str | os.PathLike, entries: list[tuple[str, list[int], torch.dtype]],
                 metadata: dict[str, str] | None = None) -> None:
        self.path = Path(path)
        header: dict[str, Any] = {}
        if metadata:
            header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
        self._order: list[tuple[str, int, torch.dtype]] = []
        offset = 0
        for name, shape, dtype in entries:
            if dtype not in _CODE_OF:
                raise ValueError(f"cannot write tensor {name!r}: dtype {dtype} has no "
                                 "safetensors code")
            size = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
            header[name] = {"dtype": _CODE_OF[dtype], "shape": list(shape),
                            "data_offsets": [offset, offset + size]}
            self._order.append((name, size, dtype))
            offset += size
        raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
        raw += b" " * (-len(raw) % 8)  # keep the data 8-byte aligned, as the reference writer does
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                         dir=self.path.parent)
        self._file = os.fdopen(fd, "wb")
        self._file.write(len(raw).to_bytes(8, "little") + raw)
        self._index = 0
        self._written = 0  # bytes of the current tensor so far
        self._skip_empty()

    def _skip_empty(self) -> None:
        # An empty tensor has no data to wait for.
        while self._index < len(self._order) and self._order[self._index][1] == 0:
            self._index += 1

    @property
    def next_name(self) -> str | None:
        """The tensor whose data comes next (None when all are written)."""
        return self._order[self._index][0] if self._index < len(self._order) else None

    def write(self, name: str, data: torch.Tensor) -> None:
        """Append the next piece of tensor ``name`` (flattened, in the header's dtype)."""
        if name != self.next_name:
            raise ValueError(f"{self.path}: got data for {name!r} while {self.next_name!r} is "
                             "due; tensors must arrive in header order")
        data = data.detach().contiguous().cpu().reshape(-1)
        if data.dtype != self._order[self._index][2]:
            raise ValueError(f"{self.path}: {name!r} is {self._order[self._index][2]} in the "
                             f"header, got data of {data.dtype}")
        raw = data.view(torch.uint8).numpy().tobytes() if data.numel() else b""
        size = self._order[self._index][1]
        if self._written + len(raw) > size:
            raise ValueError(f"{self.path}: too much data for {name!r} ({size} bytes)")
        self._file.write(raw)
        self._written += len(raw)
        if self._written == size:
            self._index += 1
            self._written = 0
            self._skip_empty()

    def close(self) -> Path:
        if self._index != len(self._order):
            self.abort()
            raise ValueError(f"{self.path}: closed before {self._order[self._index][0]!r} "
                             "was written")
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        if os.path.exists(self._tmp):
            os.unlink(self._tmp)

    def __enter__(self) -> "SafetensorsStreamWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
