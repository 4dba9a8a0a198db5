"""CheckpointWriter: append to a CheckpointSet folder one checkpoint at a time, resumably;
collection loops use it so that finished work survives a crash."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from paramgen import io
from paramgen.checkpoints.format import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    CheckpointError,
    MissingCheckpointFile,
    Spec,
    as_run,
    check_finite,
    compare_spec,
    condition_row,
    jsonable,
    read_manifest,
    spec_from_manifest,
    spec_of,
    spec_to_manifest,
)

__all__ = ["CheckpointWriter"]


def _check_same_settings(manifest: Mapping[str, Any], info: Mapping[str, Any], mpath: Path) -> None:
    """Refuse to continue a collection whose manifest records other settings than `info`."""
    old = manifest["info"]
    if old == info:
        return
    diff = sorted(k for k in set(old) | set(info) if old.get(k) != info.get(k))
    shown = "; ".join(f"{k}: {old.get(k)!r} there, {info.get(k)!r} now" for k in diff)
    raise CheckpointError(f"{mpath}: the folder holds a collection made with other settings "
                          f"({shown}); use another output folder, or delete this one to start "
                          "over")


class CheckpointWriter:
    """Append checkpoints to a CheckpointSet folder, one file at a time, resumable.

    Each `add` writes the checkpoint file and then (unless flush=False) rewrites the manifest,
    both atomically: after a crash the folder is a valid set of everything added so far (a file
    written but not yet in the manifest is simply overwritten by the next add). Reopening a
    folder continues it; `len(writer)` and `writer.provenance(i)` tell a caller what is done.
    A writer holds the folder's lock (`paramgen.io.FolderLock`) until `close()`: a second
    writer, in another process, waits for it and then continues the folder.
    """

    def __init__(self, directory: str | os.PathLike, info: Mapping[str, Any] | None = None) -> None:
        self.directory = Path(directory)
        if info and (self.directory / MANIFEST).is_file():
            # Refuse other settings before the lock file exists: a refusal leaves the folder as
            # it was. The check runs again under the lock (_reopen), against a concurrent writer.
            _check_same_settings(read_manifest(self.directory),
                                 dict(jsonable(dict(info), "info")), self.directory / MANIFEST)
        # Held until close(): a second writer (another process collecting into this folder)
        # waits, then continues from what this one wrote instead of overwriting it.
        self._lock = io.FolderLock(self.directory).acquire()
        try:
            self._discard_partial()
            self._open(info)
        except BaseException:
            self._lock.release()
            raise

    def _discard_partial(self) -> None:
        """Delete the temporary files of this folder's writes that a kill cut short (a
        checkpoint or the manifest, named ``.NAME.*.tmp`` by the atomic writer). Under the lock
        no other writer's write is in progress, and the names are only ever this writer's."""
        for pattern in (f".{MANIFEST}.*.tmp", ".ckpt_*.safetensors.*.tmp"):
            for tmp in self.directory.glob(pattern):
                tmp.unlink(missing_ok=True)

    def _open(self, info: Mapping[str, Any] | None) -> None:
        self._info = dict(jsonable(dict(info or {}), "info"))
        self._entries: list[dict[str, Any]] = []
        self._spec: Spec | None = None
        self._dim: int | None = None
        self._dim_known = False
        self._dirty = False
        if (self.directory / MANIFEST).exists():
            self._reopen()
        else:
            # An empty manifest now records the settings (info), so a restart with other settings
            # is refused even if nothing was added before the interruption. `CheckpointSet.load`
            # rejects it as empty until the first add.
            self._dirty = True
            self.flush()

    def _reopen(self) -> None:
        manifest = read_manifest(self.directory)
        mpath = self.directory / MANIFEST
        if self._info:
            _check_same_settings(manifest, self._info, mpath)
        self._info = dict(manifest["info"])
        self._entries = list(manifest["checkpoints"])
        if self._entries:
            self._spec = spec_from_manifest(manifest, str(mpath))
            self._dim = manifest.get("condition_dim")
            self._dim_known = True
            for i, e in enumerate(self._entries):
                if not (self.directory / e["file"]).is_file():
                    raise MissingCheckpointFile(f"{mpath}: checkpoints[{i}] file {e['file']!r} "
                                                "is listed but missing; the folder is damaged")

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def info(self) -> dict[str, Any]:
        """The collection-level metadata the folder records."""
        return copy.deepcopy(self._info)

    def provenance(self, i: int) -> dict[str, Any]:
        """Where checkpoint ``i`` came from, as recorded."""
        return copy.deepcopy(self._entries[i].get("provenance") or {})

    @property
    def provenances(self) -> list[dict[str, Any]]:
        """Provenance of every checkpoint written so far, in order."""
        return [copy.deepcopy(e.get("provenance") or {}) for e in self._entries]

    @property
    def runs(self) -> list[int]:
        """The run of every checkpoint written so far."""
        return [int(e.get("run", 0)) for e in self._entries]

    def metrics(self, i: int) -> dict[str, Any]:
        """The metrics recorded for checkpoint ``i``."""
        return copy.deepcopy(self._entries[i].get("metrics") or {})

    def add(self, sd: Mapping[str, torch.Tensor], run: int = 0, condition: Any = None,
            metrics: Mapping[str, Any] | None = None, provenance: Mapping[str, Any] | None = None,
            flush: bool = True) -> int:
        """Write one checkpoint; returns its index. With flush=False the manifest is written only
        by a later `flush()` (or flushing add): use it to add a batch with one manifest write."""
        i = len(self._entries)
        name = f"ckpt_{i:05d}.safetensors"
        where = f"{self.directory / name}"
        spec = spec_of(sd, where)
        if self._spec is None:
            if not spec:
                raise CheckpointError(f"{where}: state dict has no tensors")
            self._spec = spec
        else:
            compare_spec(spec, self._spec, where, "earlier checkpoints in this folder")
        check_finite(sd, where)
        cond_t = None if condition is None else torch.as_tensor(condition, dtype=torch.float32)
        if not self._dim_known:
            self._dim = None if cond_t is None else int(cond_t.reshape(-1).numel())
            self._dim_known = True
        cond_row = condition_row(cond_t, self._dim, where)
        entry = {"file": name, "run": as_run(run, f"{where}: run"),
                 "condition": None if cond_row is None else cond_row.tolist(),
                 "metrics": jsonable(dict(metrics or {}), f"{where}: metrics"),
                 "provenance": jsonable(dict(provenance or {}), f"{where}: provenance")}
        io.save_safetensors(self.directory / name, sd)
        self._entries.append(entry)
        self._dirty = True
        if flush:
            self.flush()
        return i

    def flush(self) -> None:
        """Write the manifest (atomically) if anything was added since the last write."""
        if not self._dirty:
            return
        io.write_json(self.directory / MANIFEST, {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "keys": spec_to_manifest(self._spec or {}), "condition_dim": self._dim,
            "info": self._info, "checkpoints": self._entries})
        self._dirty = False

    def close(self) -> None:
        """Write the manifest and release the folder's lock."""
        try:
            self.flush()
        finally:
            self._lock.release()

    def __enter__(self) -> "CheckpointWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
