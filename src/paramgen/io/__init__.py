"""Safe file-system writes, one idea per module:

* `atomic`: atomic, durable writes; a reader never sees a torn file, an interrupted writer
  leaves the old one, a returned write survives a power cut (`write_bytes`, `write_text`,
  `write_json`, `save_safetensors`; `fsync_folder` for renames and deletions of one's own).
* `stream`: `SafetensorsStreamWriter`, a safetensors file written piece by piece.
* `dtypes`: the safetensors dtype codes and the dtype names manifests and configs use.
* `modes`: outputs get the mode a plain open() gives under the user's umask; temporaries and
  locks stay private.
* `output` and `written`: output folders (:func:`prepare_output_dir`): paramgen writes only into
  a folder that is new, empty, or its own (marked with ``.paramgen-output``, which logs every
  file written there), and on overwrite deletes only what that log names.
  :func:`check_writable` fails before long work.
* `locks`: :class:`FolderLock`, one writer per folder at a time, across processes.
* `errors`: `OutputError` and `describe_os_error`.
"""

from __future__ import annotations

from paramgen.io.atomic import fsync_folder, save_safetensors, write_bytes, write_json, write_text
from paramgen.io.dtypes import SAFETENSORS_CODES, SAFETENSORS_DTYPES, dtype_name, parse_dtype
from paramgen.io.errors import OutputError, describe_os_error
from paramgen.io.locks import LOCK_FILE, FolderLock
from paramgen.io.modes import file_mode
from paramgen.io.output import (
    check_writable,
    discard_created_parents,
    discard_if_unused,
    first_missing,
    output_kind,
    prepare_output_dir,
    remove_written,
    written_files,
)
from paramgen.io.stream import SafetensorsStreamWriter
from paramgen.io.written import OUTPUT_MARKER

__all__ = [
    "LOCK_FILE", "OUTPUT_MARKER", "SAFETENSORS_CODES", "SAFETENSORS_DTYPES", "FolderLock",
    "OutputError", "SafetensorsStreamWriter", "check_writable", "describe_os_error",
    "discard_created_parents", "discard_if_unused", "dtype_name", "file_mode",
    "first_missing", "fsync_folder", "output_kind",
    "parse_dtype", "prepare_output_dir", "remove_written", "save_safetensors", "write_bytes",
    "write_json", "write_text", "written_files",
]
