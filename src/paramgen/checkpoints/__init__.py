"""Checkpoint collections on disk and in memory.

* `format`: the CheckpointSet folder format (``manifest.json`` + ``ckpt_NNNNN.safetensors``), its
  schema and validation, and the checks every state dict passes.
* `reader`: paramgen's one safetensors reader (header, whole file, one tensor).
* `set`: :class:`CheckpointSet`, a validated, lazily loaded sequence of state dicts with
  per-checkpoint metadata.
* `writer`: :class:`CheckpointWriter`, appends to a folder one checkpoint at a time, resumably.
* `importers`: plain folders of state dicts, and importers registered by name (PEFT folders).
"""

from __future__ import annotations

from paramgen.checkpoints.format import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    SUPPORTED_VERSIONS,
    CheckpointError,
    MissingCheckpointFile,
    dtype_name,
    is_checkpoint_folder,
    parse_dtype,
)
from paramgen.checkpoints.importers import IMPORTERS, get_importer, register_importer
from paramgen.checkpoints.reader import (
    read_safetensors,
    read_safetensors_header,
    read_safetensors_tensor,
)
from paramgen.checkpoints.set import CheckpointSet
from paramgen.checkpoints.writer import CheckpointWriter

__all__ = ["CheckpointSet", "CheckpointWriter", "CheckpointError", "MANIFEST", "FORMAT",
           "FORMAT_VERSION", "SUPPORTED_VERSIONS", "MissingCheckpointFile",
           "is_checkpoint_folder", "read_safetensors", "read_safetensors_header",
           "read_safetensors_tensor", "register_importer", "get_importer", "IMPORTERS",
           "dtype_name", "parse_dtype"]
