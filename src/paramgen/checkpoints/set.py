"""CheckpointSet: a validated, lazily loaded sequence of state dicts with per-checkpoint metadata.

Its folder format (manifest, layout checks) is `paramgen.checkpoints.format`; files are read
through `paramgen.checkpoints.reader`; `CheckpointWriter` (writer.py) appends to a folder one
checkpoint at a time.
"""

from __future__ import annotations

import copy
import math
import operator
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import torch

from paramgen import io
from paramgen.checkpoints.format import (
    CKPT_NAME,
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
    fmt_keys,
    is_checkpoint_folder,
    is_float,
    jsonable,
    read_manifest,
    spec_from_manifest,
    spec_of,
    spec_to_manifest,
)
from paramgen.checkpoints.importers import get_importer, read_state_dict_runs
from paramgen.checkpoints.reader import (
    read_safetensors,
    read_safetensors_header,
    read_safetensors_tensor,
)

__all__ = ["CheckpointSet"]


class CheckpointSet:
    """An ordered set of state dicts with identical keys, shapes and dtypes, plus metadata.

    Items are either in memory or files on disk that are read when accessed (so a set of large
    checkpoints costs no memory until used). Build one with `from_state_dicts`, `load` or
    `import_folder`; write it with `save`.
    """

    def __init__(self, items: list[dict[str, torch.Tensor] | Path], spec: Spec,
                 conditions: torch.Tensor | None, runs: list[int], metrics: list[dict],
                 provenance: list[dict], info: dict[str, Any]) -> None:
        # Private: the public constructors validate; this only stores.
        n = len(items)
        if n == 0:
            raise CheckpointError("a CheckpointSet needs at least one checkpoint "
                                  "(got an empty set)")
        if not (len(runs) == len(metrics) == len(provenance) == n):
            raise CheckpointError("internal: metadata lists differ in length from the checkpoints")
        if conditions is not None and conditions.shape[0] != n:
            raise CheckpointError(f"conditions have {conditions.shape[0]} rows for {n} checkpoints")
        self._items = items
        self._spec = spec
        self._conditions = conditions
        self._runs = runs
        self._metrics = metrics
        self._provenance = provenance
        self._info = info

    # -- constructors ---------------------------------------------------------------------

    @classmethod
    def from_state_dicts(cls, sds: Sequence[Mapping[str, torch.Tensor]],
                         conditions: Sequence[Sequence[float]] | torch.Tensor | None = None,
                         runs: Sequence[int] | None = None,
                         metrics: Sequence[Mapping[str, Any]] | None = None,
                         provenance: Sequence[Mapping[str, Any]] | None = None,
                         info: Mapping[str, Any] | None = None,
                         _names: Sequence[str] | None = None) -> "CheckpointSet":
        """An in-memory set from state dicts (tensors are copied to CPU, detached).

        conditions: None, or [N, C] floats (one row per checkpoint). runs: ints (default all 0).
        metrics / provenance: one JSON-able dict per checkpoint. info: collection-level dict.
        """
        sds = list(sds)
        n = len(sds)
        if n == 0:
            raise CheckpointError("cannot build a CheckpointSet from an empty list of state dicts")
        names = list(_names) if _names is not None else [f"checkpoint {i}" for i in range(n)]
        items: list[dict[str, torch.Tensor] | Path] = []
        spec: Spec | None = None
        for i, sd in enumerate(sds):
            if not isinstance(sd, Mapping):
                raise CheckpointError(f"{names[i]}: expected a state dict, got {type(sd).__name__}")
            s = spec_of(sd, names[i])
            if spec is None:
                if not s:
                    raise CheckpointError(f"{names[i]}: state dict has no tensors")
                spec = s
            else:
                compare_spec(s, spec, names[i], names[0])
            check_finite(sd, names[i])
            # Copy: callers often pass model.state_dict(), which aliases live parameters that the
            # next optimizer step would change under us. Keys in the first checkpoint's order, so
            # every item iterates alike whatever order its source had.
            items.append({k: sd[k].detach().to("cpu", copy=True) for k in spec})
        assert spec is not None
        cond = cls._conditions_tensor(conditions, n)
        runs_l = cls._meta_list(runs, n, "runs", default=0)
        runs_l = [as_run(r, f"runs[{i}]") for i, r in enumerate(runs_l)]
        metrics_l = [cls._meta_dict(m, f"metrics[{i}]")
                     for i, m in enumerate(cls._meta_list(metrics, n, "metrics", default=None))]
        prov_l = [cls._meta_dict(p, f"provenance[{i}]")
                  for i, p in enumerate(cls._meta_list(provenance, n, "provenance", default=None))]
        info_d = dict(jsonable(dict(info or {}), "info"))
        return cls(items, spec, cond, runs_l, metrics_l, prov_l, info_d)

    @classmethod
    def import_peft(cls, adapter_dirs: Sequence[str | os.PathLike] | str | os.PathLike,
                    conditions: Any = None) -> "CheckpointSet":
        """PEFT adapter folders as a set: each adapter_model.safetensors is a checkpoint, the
        adapter_config.json is kept in info["peft_config"] (see paramgen.adapters.importer)."""
        # Through the importer registry: the PEFT importer belongs to paramgen.adapters, a layer
        # above this one, which the registry imports on first use.
        return get_importer("peft")(adapter_dirs, conditions=conditions)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "CheckpointSet":
        """Open a CheckpointSet folder. Reads the manifest and every file's header now (so layout
        errors surface at once, naming the file); tensor data is read on access."""
        directory = Path(directory)
        manifest = read_manifest(directory)
        mpath = directory / MANIFEST
        spec = spec_from_manifest(manifest, str(mpath))
        entries = manifest["checkpoints"]
        if not entries:
            raise CheckpointError(f"{mpath}: the set is empty (no checkpoints listed)")
        if not spec:
            raise CheckpointError(f"{mpath}: 'keys' is empty")
        dim = manifest.get("condition_dim")
        items: list[dict[str, torch.Tensor] | Path] = []
        rows: list[torch.Tensor | None] = []
        runs, metrics, prov = [], [], []
        for i, e in enumerate(entries):
            where = f"{mpath}: checkpoints[{i}]"
            if not isinstance(e, dict) or not isinstance(e.get("file"), str):
                raise CheckpointError(f"{where} needs a 'file' string")
            rel = Path(e["file"])
            if rel.is_absolute() or ".." in rel.parts:
                raise CheckpointError(f"{where}: file {e['file']!r} must be a path inside "
                                      f"{directory}")
            path = directory / rel
            if not path.is_file():
                raise MissingCheckpointFile(f"{where}: file {e['file']!r} is listed in the "
                                            f"manifest but {path} is not there")
            compare_spec(read_safetensors_header(path), spec, str(path), f"the manifest {mpath}")
            rows.append(condition_row(e.get("condition"), dim, f"{where} ({e['file']})"))
            runs.append(as_run(e.get("run", 0), f"{where}.run"))
            metrics.append(dict(e.get("metrics") or {}))
            prov.append(dict(e.get("provenance") or {}))
            items.append(path)
        cond = None if dim is None else torch.stack(rows)  # type: ignore[arg-type]
        return cls(items, spec, cond, runs, metrics, prov, dict(manifest["info"]))

    @classmethod
    def import_folder(cls, directory: str | os.PathLike, allow_pickle: bool = False,
                      info: Mapping[str, Any] | None = None) -> "CheckpointSet":
        """Read a folder of `.safetensors` / `.pt` / `.pth` state dicts (sorted by file name);
        a folder of subfolders holding them reads as one run per subfolder.

        `.pt`/`.pth` files are pickles, which can run code when read; they are refused unless
        `allow_pickle=True`, and even then read with `torch.load(weights_only=True)`. Wrappers such
        as {"state_dict": sd, ...} or {"model": sd, ...} are unwrapped. Each checkpoint's
        provenance records its source file (relative to `directory`) and run name.
        """
        found = read_state_dict_runs(directory, allow_pickle)
        prov = [{"source": p.relative_to(directory).as_posix(), "run_name": found.run_names[r]}
                for p, r in zip(found.files, found.runs)]
        return cls.from_state_dicts(found.state_dicts, runs=found.runs, provenance=prov,
                                    info=info, _names=[str(p) for p in found.files])

    # -- writing ----------------------------------------------------------------------------

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the set as a CheckpointSet folder: each checkpoint file atomically, the manifest
        last, holding the folder's writer lock. Checkpoint files a previous set saved there that
        this one no longer lists are removed; nothing else in the folder is touched."""
        directory = Path(directory)
        io.check_writable(directory)
        with io.FolderLock(directory):
            old_files: set[str] = set()
            if is_checkpoint_folder(directory):
                try:
                    old_files = {e["file"] for e in read_manifest(directory)["checkpoints"]}
                except CheckpointError:
                    old_files = set()  # damaged old manifest: nothing we can safely clean up
            # Saving over a folder this set reads from lazily would overwrite files still to be
            # read (e.g. a reordered subset); read everything first in that case.
            target = directory.resolve()
            items = [self[i] if isinstance(it, Path) and it.parent.resolve() == target else it
                     for i, it in enumerate(self._items)]
            entries = []
            for i, item in enumerate(items):
                name = f"ckpt_{i:05d}.safetensors"
                sd = item if isinstance(item, dict) else self._read(item)
                io.save_safetensors(directory / name, sd)
                entries.append(self._entry(name, i))
            io.write_json(directory / MANIFEST, self._manifest(entries))
            # Only files named as paramgen names checkpoints, listed by the old manifest, directly
            # in this folder: never the manifest, a user's file, or anything elsewhere.
            for stale in old_files - {e["file"] for e in entries}:
                p = directory / stale
                if CKPT_NAME.fullmatch(stale) and p.is_file() and not p.is_symlink():
                    p.unlink()
        return directory

    def _entry(self, name: str, i: int) -> dict[str, Any]:
        cond = self.condition(i)
        return {"file": name, "run": self._runs[i],
                "condition": None if cond is None else cond.tolist(),
                "metrics": self._metrics[i], "provenance": self._provenance[i]}

    def _manifest(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION,
                "keys": spec_to_manifest(self._spec), "condition_dim": self.condition_dim,
                "info": self._info, "checkpoints": entries}

    # -- sequence access -------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._items)

    def _index(self, i: Any) -> int:
        n = len(self._items)
        try:
            i = operator.index(i)
        except TypeError:
            raise TypeError(f"checkpoint index must be an int or slice, got {type(i).__name__}") \
                from None
        if not -n <= i < n:
            raise IndexError(f"checkpoint index {i} out of range for a set of {n}")
        return i % n

    def _read(self, path: Path) -> dict[str, torch.Tensor]:
        sd = read_safetensors(path)
        compare_spec(spec_of(sd, str(path)), self._spec, str(path), "the manifest")
        check_finite(sd, str(path))
        # Manifest order, not the file's (safetensors sorts keys): tokenizers rely on a fixed order.
        return {k: sd[k] for k in self._spec}

    def __getitem__(self, i: int | slice) -> dict[str, torch.Tensor] | "CheckpointSet":
        """The i-th state dict (a fresh dict; in-memory tensors are shared, do not modify them in
        place). A slice gives a `subset`."""
        if isinstance(i, slice):
            return self.subset(range(len(self))[i])
        item = self._items[self._index(i)]
        return dict(item) if isinstance(item, dict) else self._read(item)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for i in range(len(self)):
            yield self[i]  # type: ignore[misc]

    def __repr__(self) -> str:
        where = "in memory"
        if self._items and isinstance(self._items[0], Path):
            where = f"from {self._items[0].parent}"
        return (f"CheckpointSet({len(self)} checkpoints, {len(self._spec)} keys, "
                f"{self.num_params} float params, condition_dim={self.condition_dim}, {where})")

    # -- metadata --------------------------------------------------------------------------

    def condition(self, i: int) -> torch.Tensor | None:
        """Condition vector of checkpoint i (float32 [C]), or None for an unconditional set."""
        i = self._index(i)
        return None if self._conditions is None else self._conditions[i].clone()

    @property
    def conditions(self) -> torch.Tensor | None:
        """All conditions as float32 [N, C], or None."""
        return None if self._conditions is None else self._conditions.clone()

    @property
    def condition_dim(self) -> int | None:
        """Length of every checkpoint's condition, or None for an unconditioned set."""
        return None if self._conditions is None else int(self._conditions.shape[1])

    def run(self, i: int) -> int:
        """The run checkpoint ``i`` belongs to."""
        return self._runs[self._index(i)]

    @property
    def runs(self) -> list[int]:
        """The run of every checkpoint, in order."""
        return list(self._runs)

    def metrics(self, i: int) -> dict[str, Any]:
        """The metrics recorded for checkpoint ``i`` (e.g. accuracy)."""
        return copy.deepcopy(self._metrics[self._index(i)])

    def provenance(self, i: int) -> dict[str, Any]:
        """Where checkpoint ``i`` came from (seed, epoch, step, source file, task)."""
        return copy.deepcopy(self._provenance[self._index(i)])

    @property
    def info(self) -> dict[str, Any]:
        """Collection-level metadata (arch, data, in_shape, num_classes, metric, ...); a copy."""
        return copy.deepcopy(self._info)

    @property
    def spec(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        """key -> (shape, dtype), in state-dict order."""
        return dict(self._spec)

    @property
    def keys(self) -> list[str]:
        """Every state-dict key, in state-dict order."""
        return list(self._spec)

    @property
    def num_params(self) -> int:
        """Number of floating-point elements per checkpoint (integer buffers are not generated)."""
        return sum(math.prod(shape) for shape, dt in self._spec.values() if is_float(dt))

    def subset(self, indices: Iterable[int]) -> "CheckpointSet":
        """A new set of the given checkpoints, in the given order (no data is copied)."""
        idx = [self._index(i) for i in indices]
        if not idx:
            raise CheckpointError("subset: no indices given; a CheckpointSet cannot be empty")
        cond = None if self._conditions is None else self._conditions[idx].clone()
        return CheckpointSet([self._items[i] for i in idx], dict(self._spec), cond,
                             [self._runs[i] for i in idx],
                             [copy.deepcopy(self._metrics[i]) for i in idx],
                             [copy.deepcopy(self._provenance[i]) for i in idx],
                             copy.deepcopy(self._info))

    def with_runs(self, runs: Sequence[int]) -> "CheckpointSet":
        """The same checkpoints with other run ids, one int per checkpoint (no data is copied):
        e.g. each task model of a grid as its own run when the task models were trained from
        independent initialisations."""
        runs = list(runs)
        if len(runs) != len(self._items):
            raise CheckpointError(f"with_runs: {len(runs)} run ids for {len(self._items)} "
                                  "checkpoints")
        if not all(isinstance(r, int) and not isinstance(r, bool) for r in runs):
            raise CheckpointError(f"with_runs: run ids must be ints, got {runs[:4]}")
        out = self.subset(range(len(self._items)))
        out._runs = runs
        return out

    def stack(self, key: str) -> torch.Tensor:
        """One key across all checkpoints as a tensor [N, *shape]. For files on disk only that
        key is read from each file."""
        if key not in self._spec:
            raise KeyError(f"key {key!r} is not in this CheckpointSet; "
                           f"keys: {fmt_keys(self._spec)}")
        out = []
        for item in self._items:
            if isinstance(item, dict):
                out.append(item[key])
                continue
            t = read_safetensors_tensor(item, key)
            compare_spec({key: (tuple(t.shape), t.dtype)}, {key: self._spec[key]}, str(item),
                          "the manifest")
            check_finite({key: t}, str(item))
            out.append(t)
        return torch.stack(out)

    def validate(self) -> "CheckpointSet":
        """Read every checkpoint now and check it fully (layout and finite values). `load` only
        checks file headers; call this to catch NaN/Inf before a long job starts."""
        for i in range(len(self)):
            self[i]
        return self

    # -- internal helpers --------------------------------------------------------------------

    @staticmethod
    def _meta_dict(value: Any, where: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise CheckpointError(f"{where}: expected a dict, got {type(value).__name__}")
        return dict(jsonable(value, where))

    @staticmethod
    def _meta_list(values: Sequence[Any] | None, n: int, name: str, default: Any) -> list[Any]:
        if values is None:
            return [default] * n
        values = list(values)
        if len(values) != n:
            raise CheckpointError(f"{name} has {len(values)} entries for {n} checkpoints")
        return values

    @staticmethod
    def _conditions_tensor(conditions: Any, n: int) -> torch.Tensor | None:
        if conditions is None:
            return None
        if isinstance(conditions, torch.Tensor):
            rows = conditions
        else:
            rows = list(conditions)
            if len(rows) != n:
                raise CheckpointError(f"conditions has {len(rows)} rows for {n} checkpoints")
            if any(r is None for r in rows):
                first = [r is None for r in rows].index(True)
                raise CheckpointError("conditions: either every checkpoint has a condition or "
                                      f"none does (row {first} is None)")
            lens = {len(torch.as_tensor(r).reshape(-1)) for r in rows}
            if len(lens) > 1:
                raise CheckpointError(f"conditions rows have different lengths {sorted(lens)}")
            rows = torch.stack([torch.as_tensor(r, dtype=torch.float32).reshape(-1) for r in rows])
        t = rows.detach().to("cpu", torch.float32).clone()
        if t.ndim != 2:
            raise CheckpointError(f"conditions must be [N, C], got shape {list(t.shape)} "
                                  "(for one value per checkpoint use shape [N, 1])")
        if t.shape[0] != n:
            raise CheckpointError(f"conditions has {t.shape[0]} rows for {n} checkpoints")
        if t.shape[1] == 0:
            raise CheckpointError("conditions has zero columns; pass conditions=None instead")
        if not bool(torch.isfinite(t).all()):
            raise CheckpointError("conditions hold non-finite values")
        return t
