"""Output folders: paramgen writes only into a folder that is new, empty, or its own.

A folder paramgen prepares (:func:`prepare_output_dir`) is marked with ``.paramgen-output``, which
logs every file written there (`paramgen.io.written`); on overwrite paramgen deletes only what
that log names. :func:`check_writable` fails before long work.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from paramgen.io.atomic import write_text
from paramgen.io.errors import OutputError
from paramgen.io.locks import LOCK_FILE
from paramgen.io.written import LOGGED, OUTPUT_MARKER, OUTPUT_ROOTS

_MARKER_HEADER = ("# paramgen output folder (kind: {kind}). The paths below were written by "
                  "paramgen; they are the only files it will delete here.\n")


def check_writable(path: str | os.PathLike, need_bytes: int = 0) -> Path:
    """Fail now, naming the path and the fix, if folder `path` (existing or to be created) cannot
    receive files: a file in its place or on its way, no permission, or less than `need_bytes`
    free. Nothing is created. Call it before long work so a run does not fail at its end."""
    if not str(path).strip():
        raise OutputError("the output path is empty; give a folder path")
    path = Path(path)
    probe = path
    while not os.path.lexists(probe) and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        if probe == path:
            raise OutputError(f"{path} is a file, not a folder; give a folder path for the "
                              "output")
        raise OutputError(f"cannot create folder {path}: {probe} is a file, not a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".paramgen-probe.", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise OutputError(f"cannot write to {path}: {probe} is not writable "
                          f"({exc.strerror or exc}); choose another folder or fix its "
                          "permissions") from None
    if need_bytes > 0:
        free = shutil.disk_usage(probe).free
        if free < need_bytes:
            raise OutputError(f"not enough free space for {path}: about {need_bytes / 1e6:.1f} MB "
                              f"needed, {free / 1e6:.1f} MB free on that disk")
    return path


def output_kind(path: str | os.PathLike) -> str | None:
    """The kind an output folder was prepared for ("samples", ...), None if not paramgen's."""
    try:
        with open(Path(path) / OUTPUT_MARKER, encoding="utf-8", errors="replace") as f:
            head = f.readline()
    except OSError:
        return None
    start = head.find("(kind: ")
    return head[start + 7:head.find(")", start)] if start >= 0 else "output"


def prepare_output_dir(path: str | os.PathLike, overwrite: bool = False,
                       owned: Any = None, fresh: bool = False, kind: str = "output") -> Path:
    """Make folder `path` ready for paramgen's output and return it.

    * A missing or empty folder is created and marked as paramgen's.
    * A folder paramgen made (its marker, or ``owned(path)`` is true, e.g. an existing
      CheckpointSet) is reused, so caches and resumes work; with `overwrite`, every file paramgen
      logged there is deleted first, and nothing else.
    * Any other non-empty folder is refused unless `overwrite`; then paramgen writes into it and
      deletes none of what was there.

    `fresh` deletes what paramgen logged (like `overwrite`) but does not open a foreign folder.
    `kind` names what the folder holds; a folder paramgen prepared for another kind counts as
    foreign (so `sample --out` pointed at a demo folder never clears the demo's checkpoints).
    """
    path = check_writable(path)
    path.mkdir(parents=True, exist_ok=True)
    marker = path / OUTPUT_MARKER
    # List before reading the marker: a process preparing the same new folder at the same time
    # writes its marker before anything else, so whatever it wrote by the listing's time is
    # covered by a marker the read below sees (no lock: it would stay behind in the folder).
    names = [p.name for p in path.iterdir()]
    found = output_kind(path)
    ours = found == kind or (found is None and owned is not None and bool(owned(path)))
    if not ours and not overwrite and any(not _transient(n) for n in names):
        what = (f"holds paramgen's {found}, not {kind}" if found is not None
                else "is not empty and was not made by paramgen")
        raise OutputError(f"{path} {what}; choose a new or empty folder, or pass --overwrite to "
                          "write into it (paramgen never deletes files it did not write)")
    root = Path(os.path.abspath(path))
    if (overwrite or fresh) and found == kind:
        remove_written(path)
    if found is None:
        write_text(marker, _MARKER_HEADER.format(kind=kind))
    OUTPUT_ROOTS.add(root)
    return path


def _transient(name: str) -> bool:
    """paramgen's lock, a probe of check_writable, or the marker on its way (another process
    preparing the same folder at the same time)."""
    return (name == LOCK_FILE or name.startswith(".paramgen-probe.")
            or (name.startswith(f".{OUTPUT_MARKER}.") and name.endswith(".tmp")))


def discard_if_unused(path: str | os.PathLike) -> bool:
    """Remove output folder `path` if it holds nothing but paramgen's marker and lock (a command
    that prepared it then failed on its input); returns whether it went."""
    path = Path(path)
    try:
        names = {p.name for p in path.iterdir()}
    except OSError:
        return False
    if not names <= {OUTPUT_MARKER, LOCK_FILE} or OUTPUT_MARKER not in names:
        return False
    for name in names:
        (path / name).unlink(missing_ok=True)
    try:
        path.rmdir()
    except OSError:
        return False
    OUTPUT_ROOTS.discard(Path(os.path.abspath(path)))
    return True


def first_missing(path: str | os.PathLike) -> Path | None:
    """The topmost folder of `path` (itself included) that does not exist yet: what preparing
    `path` will create, and so what a refused command may take back."""
    path = Path(path)
    return next((p for p in [*reversed(path.parents), path] if not p.exists()), None)


def discard_created_parents(path: str | os.PathLike, created: Path | None) -> None:
    """Remove the empty parents of `path` up to `created` (from `first_missing`, before the
    command made them); stops at the first one that is not empty or not its to remove."""
    if created is None:
        return
    for parent in Path(path).parents:
        if created != parent and created not in parent.parents:
            break
        try:
            parent.rmdir()
        except OSError:
            break


def written_files(path: str | os.PathLike) -> list[Path]:
    """The files paramgen logged as written in output folder `path` that are still there, each
    checked to lie inside `path` without passing through a link (so a link put in place of one
    of paramgen's folders never leads a delete elsewhere)."""
    path = Path(path)
    marker = path / OUTPUT_MARKER
    if not marker.is_file():
        return []
    root = path.resolve()
    out = []
    for line in marker.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        rel = PurePosixPath(line)
        if not line or line.startswith("#") or rel.is_absolute() or ".." in rel.parts:
            continue
        f = path / rel
        if f.is_file() and not f.is_symlink() and f.resolve() == root.joinpath(*rel.parts):
            out.append(f)
    return list(dict.fromkeys(out))


def remove_written(path: str | os.PathLike, under: str | None = None) -> int:
    """Delete the files paramgen wrote in output folder `path` (see :func:`written_files`),
    only those below its subfolder `under` if given, then the folders they leave empty; returns
    how many files went. Nothing else is touched."""
    path = Path(path)
    files = written_files(path)
    if under is not None:
        files = [f for f in files if (path / under) in f.parents]
    for f in files:
        f.unlink()
        parent = f.parent
        while parent != path and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
    if under is None:
        root = Path(os.path.abspath(path))
        for key in [k for k in LOGGED if k[0] == root]:
            LOGGED.discard(key)
        write_text(path / OUTPUT_MARKER, _MARKER_HEADER.format(kind=output_kind(path)))
    return len(files)
