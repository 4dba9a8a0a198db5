"""A safetensors file written tensor by tensor, piece by piece (for outputs larger than memory)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from paramgen.io.atomic import fsync_folder
from paramgen.io.dtypes import SAFETENSORS_CODES
from paramgen.io.modes import publish
from paramgen.io.written import log_written


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
            if dtype not in SAFETENSORS_CODES:
                raise ValueError(f"cannot write tensor {name!r}: dtype {dtype} has no "
                                 "safetensors code")
            size = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
            header[name] = {"dtype": SAFETENSORS_CODES[dtype], "shape": list(shape),
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
            publish(self._tmp)
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        fsync_folder(self.path.parent)  # the rename, too, survives a power cut
        log_written(self.path)
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
