"""The write log of output folders: every file paramgen writes below a folder it prepared is
named, one line each, in the folder's marker (``.paramgen-output``), so that an overwrite deletes
only what paramgen wrote. The atomic writers call `log_written`; `paramgen.io.output` prepares
folders and reads the log."""

from __future__ import annotations

import os
from pathlib import Path

OUTPUT_MARKER = ".paramgen-output"
OUTPUT_ROOTS: set[Path] = set()      # folders prepared in this process: writes below are logged
LOGGED: set[tuple[Path, str]] = set()  # (root, relative path) already in a marker


def log_written(path: Path) -> None:
    """Name `path` in the marker of the prepared output folder it lies in, if any."""
    if not OUTPUT_ROOTS:
        return
    full = Path(os.path.abspath(path))
    for root in OUTPUT_ROOTS:
        if root in full.parents:
            rel = full.relative_to(root).as_posix()
            if rel == OUTPUT_MARKER or (root, rel) in LOGGED:
                return
            try:
                # Appends of one short line are atomic on local file systems, so two processes
                # logging into one folder do not interleave; a lost line only means a file is
                # kept on overwrite, never that a foreign one is deleted.
                with open(root / OUTPUT_MARKER, "a", encoding="utf-8") as f:
                    f.write(rel + "\n")
            except OSError:
                return
            LOGGED.add((root, rel))
            return
