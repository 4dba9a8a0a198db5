"""Safe file-system writes.

* Atomic writes: a reader never sees a torn file, an interrupted writer leaves the old one.
* Output folders (:func:`prepare_output_dir`): paramgen writes only into a folder that is new,
  empty, or its own (marked with ``.paramgen-output``, which logs every file written there), and
  on overwrite deletes only what that log names. :func:`check_writable` fails before long work.
* :class:`FolderLock`: one writer per folder at a time, across processes.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path, PurePosixPath
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
    _log_written(path)
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
        _log_written(self.path)
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


# ----------------------------------------------------------------------------- output folders

OUTPUT_MARKER = ".paramgen-output"
_MARKER_HEADER = ("# paramgen output folder (kind: {kind}). The paths below were written by "
                  "paramgen; they are the only files it will delete here.\n")
_OUTPUT_ROOTS: set[Path] = set()      # folders prepared in this process: writes below are logged
_LOGGED: set[tuple[Path, str]] = set()  # (root, relative path) already in a marker


class OutputError(ValueError):
    """An output path paramgen cannot or must not use; the message names it and the way out."""


def _log_written(path: Path) -> None:
    if not _OUTPUT_ROOTS:
        return
    full = Path(os.path.abspath(path))
    for root in _OUTPUT_ROOTS:
        if root in full.parents:
            rel = full.relative_to(root).as_posix()
            if rel == OUTPUT_MARKER or (root, rel) in _LOGGED:
                return
            try:
                # Appends of one short line are atomic on local file systems, so two processes
                # logging into one folder do not interleave; a lost line only means a file is
                # kept on overwrite, never that a foreign one is deleted.
                with open(root / OUTPUT_MARKER, "a", encoding="utf-8") as f:
                    f.write(rel + "\n")
            except OSError:
                return
            _LOGGED.add((root, rel))
            return


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
    _OUTPUT_ROOTS.add(root)
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
    _OUTPUT_ROOTS.discard(Path(os.path.abspath(path)))
    return True


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
        for key in [k for k in _LOGGED if k[0] == root]:
            _LOGGED.discard(key)
        write_text(path / OUTPUT_MARKER, _MARKER_HEADER.format(kind=output_kind(path)))
    return len(files)


# ----------------------------------------------------------------------------- locks

LOCK_FILE = ".paramgen.lock"
_HELD: set[str] = set()  # folders this process holds a lock on


class FolderLock:
    """An exclusive lock on a folder for one writer, across processes (``flock`` on
    ``FOLDER/.paramgen.lock``). The operating system drops it when the process ends, however it
    ends, so a killed writer never leaves a stale lock. A second writer waits (saying so on
    stderr) unless ``wait=False``, which raises OutputError instead. Taking a lock this process
    already holds raises at once rather than waiting for itself forever."""

    def __init__(self, folder: str | os.PathLike, wait: bool = True) -> None:
        self.folder = Path(folder)
        self.wait = wait
        self._fd: int | None = None
        self._key = ""

    def acquire(self) -> "FolderLock":
        try:
            import fcntl
        except ImportError:  # not POSIX: no cross-process lock available
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        self._key = os.path.realpath(self.folder)
        if self._key in _HELD:
            raise OutputError(f"{self.folder} is already open for writing in this process; "
                              "close the other writer first")
        fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                other = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
                if not self.wait:
                    raise OutputError(f"{self.folder} is being written by another paramgen "
                                      f"process (pid {other}); wait for it to finish") from None
                print(f"paramgen: waiting for another process (pid {other}) writing to "
                      f"{self.folder} ...", file=sys.stderr, flush=True)
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        _HELD.add(self._key)
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        os.close(self._fd)  # closing the descriptor drops the flock
        self._fd = None
        _HELD.discard(self._key)

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


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
