"""CheckpointSet: a validated, lazily loaded sequence of state dicts with per-checkpoint metadata.

On disk a set is a folder (see docs/architecture.md, "CheckpointSet folder")::

    DIR/manifest.json
    DIR/ckpt_00000.safetensors ...

The manifest is the single source of truth: it lists every checkpoint file in order with its run,
condition, metrics and provenance, and the expected key -> (shape, dtype) layout. Checkpoint files
are written first and the manifest last, each atomically, so a reader that sees a manifest always
sees every file it names complete.

`CheckpointWriter` appends to such a folder one checkpoint at a time and can be reopened after an
interruption; collection loops use it so that finished work survives a crash.
"""

from __future__ import annotations

import copy
import json
import math
import operator
import os
import re
import struct
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from paramgen import io

__all__ = ["CheckpointSet", "CheckpointWriter", "CheckpointError", "MANIFEST", "FORMAT",
           "FORMAT_VERSION", "MissingCheckpointFile", "is_checkpoint_folder"]

MANIFEST = "manifest.json"
FORMAT = "paramgen.checkpointset"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)

# File types import_folder understands; pickle-based ones need an explicit opt-in.
_SAFE_SUFFIXES = (".safetensors",)
_PICKLE_SUFFIXES = (".pt", ".pth")

class CheckpointError(ValueError):
    """A checkpoint set (in memory or on disk) is malformed; the message names the file and key.

    A subclass of ValueError so that callers (and the command line) that handle bad input as
    ValueError keep working.
    """


class MissingCheckpointFile(CheckpointError, FileNotFoundError):
    """A file the manifest lists is not there (a ValueError and a FileNotFoundError)."""


Spec = dict[str, tuple[tuple[int, ...], torch.dtype]]
# The file names paramgen gives checkpoints; `save` deletes stale files of this form only.
_CKPT_NAME = re.compile(r"ckpt_\d{5,}\.safetensors")


# ----------------------------------------------------------------------------- helpers

dtype_name = io.dtype_name


def parse_dtype(name: str, where: str = "manifest") -> torch.dtype:
    """`io.parse_dtype`, raising CheckpointError naming `where` for an unknown name."""
    try:
        return io.parse_dtype(name, where)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None


def _is_float(dtype: torch.dtype) -> bool:
    return dtype.is_floating_point or dtype.is_complex


def _jsonable(value: Any, where: str) -> Any:
    """Convert tensors, numpy scalars and tuples to plain JSON values, or say what cannot be."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        # JSON has no NaN/Inf; Python would write a non-standard token other readers reject.
        if not math.isfinite(value):
            raise CheckpointError(f"{where}: value {value!r} is not finite and cannot be stored")
        return value
    if isinstance(value, torch.Tensor):
        return _jsonable(value.detach().cpu().tolist(), where)
    if hasattr(value, "item") and hasattr(value, "dtype") and getattr(value, "ndim", 1) == 0:
        return _jsonable(value.item(), where)  # numpy scalar
    if hasattr(value, "tolist") and hasattr(value, "dtype"):
        return _jsonable(value.tolist(), where)  # numpy array
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise CheckpointError(f"{where}: value of type {type(value).__name__} cannot be stored as JSON")


def _spec_of(sd: Mapping[str, torch.Tensor], where: str) -> Spec:
    spec: Spec = {}
    for key, t in sd.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{where}: key {key!r} is not a string")
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"{where}: key {key!r} holds a {type(t).__name__}, not a tensor")
        spec[key] = (tuple(t.shape), t.dtype)
    return spec


def _fmt_keys(keys: Iterable[str], limit: int = 8) -> str:
    keys = sorted(keys)
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _compare_spec(spec: Spec, expected: Spec, where: str, reference: str) -> None:
    """Raise a CheckpointError that says exactly how `spec` (at `where`) differs from `expected`."""
    missing = expected.keys() - spec.keys()
    extra = spec.keys() - expected.keys()
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing keys {_fmt_keys(missing)}")
        if extra:
            parts.append(f"extra keys {_fmt_keys(extra)}")
        raise CheckpointError(f"{where}: keys differ from {reference}: " + "; ".join(parts))
    for key, (shape, dtype) in expected.items():
        got_shape, got_dtype = spec[key]
        if got_shape != shape:
            raise CheckpointError(f"{where}: key {key!r} has shape {list(got_shape)}, "
                                  f"but {reference} has {list(shape)}")
        if got_dtype != dtype:
            raise CheckpointError(f"{where}: key {key!r} has dtype {dtype_name(got_dtype)}, "
                                  f"but {reference} has {dtype_name(dtype)}")


def _check_finite(sd: Mapping[str, torch.Tensor], where: str) -> None:
    for key, t in sd.items():
        if _is_float(t.dtype) and t.numel() and not bool(torch.isfinite(t).all()):
            n_nan = int(torch.isnan(t).sum())
            n_inf = int(torch.isinf(t).sum())
            raise CheckpointError(f"{where}: key {key!r} holds non-finite values "
                                  f"({n_nan} NaN, {n_inf} Inf of {t.numel()})")


def _read_safetensors_header(path: Path) -> Spec:
    """Key -> (shape, dtype) of a safetensors file from its header alone (no tensor data read).

    Parsing the header ourselves lets `load` check every file's layout cheaply and report a
    truncated or corrupt file by name before any training starts.
    """
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


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.exists():
        raise FileNotFoundError(f"checkpoint file {path} does not exist")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt data
        raise CheckpointError(f"{path}: unreadable safetensors file ({exc})") from exc


def _unwrap(obj: Any, where: str) -> dict[str, torch.Tensor]:
    """Return the state dict inside a training checkpoint such as {"state_dict": sd, "epoch": 3}."""
    for _ in range(4):  # wrappers can nest ({"model": {"state_dict": ...}}); a few levels is plenty
        if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor)
                                                    for v in obj.values()):
            return dict(obj)
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in ("state_dict", "model")
                          if isinstance(obj.get(k), Mapping)), None)
            if inner is not None:
                obj = inner
                continue
        break
    if isinstance(obj, Mapping):
        bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
        raise CheckpointError(f"{where}: not a state dict: keys {_fmt_keys(map(str, bad))} are not "
                              "tensors, and there is no 'state_dict' or 'model' entry to unwrap")
    raise CheckpointError(f"{where}: holds a {type(obj).__name__}, not a state dict")


def _no_constant(token: str) -> Any:
    raise ValueError(f"{token} is not a JSON value")


def _read_manifest(directory: Path) -> dict[str, Any]:
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"{directory} is a file; a CheckpointSet is a folder holding "
                              f"{MANIFEST} and .safetensors files")
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint folder {directory} does not exist")
    path = directory / MANIFEST
    if not path.exists():
        hint = ""
        if any(p.suffix in _SAFE_SUFFIXES + _PICKLE_SUFFIXES for p in directory.iterdir()):
            hint = (f"; it holds checkpoint files: to read a plain folder of state dicts use "
                    f"CheckpointSet.import_folder({str(directory)!r})")
        raise FileNotFoundError(f"{path} is missing: {directory} is not a CheckpointSet "
                                f"folder{hint}")
    try:
        # NaN/Infinity are not JSON; Python would accept them and carry them into metrics.
        manifest = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except (OSError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: unreadable manifest ({type(exc).__name__}: "
                              f"{str(exc)[:200]})") from exc
    _check_manifest(manifest, path)
    return manifest


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_manifest(manifest: Any, path: Path) -> None:
    """Every field of a manifest has the type and range it must have, or a CheckpointError
    names the field. Callers can then read it without further checks."""
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{path}: manifest must be a JSON object")
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path}: 'format' is {manifest.get('format')!r}, "
                              f"expected {FORMAT!r}")
    version = manifest.get("format_version")
    if not _is_int(version) or version not in SUPPORTED_VERSIONS:
        raise CheckpointError(f"{path}: unknown 'format_version' {version!r}; this paramgen reads "
                              f"versions {list(SUPPORTED_VERSIONS)} (written by a newer paramgen?)")
    for field, kind in [("keys", dict), ("checkpoints", list), ("info", dict)]:
        if not isinstance(manifest.get(field), kind):
            raise CheckpointError(f"{path}: {field!r} must be a JSON {kind.__name__}, "
                                  f"got {type(manifest.get(field)).__name__}")
    for key, entry in manifest["keys"].items():
        where = f"{path}: keys[{key!r}]"
        if not isinstance(entry, dict) or "shape" not in entry or "dtype" not in entry:
            raise CheckpointError(f"{where} needs 'shape' and 'dtype'")
        shape = entry["shape"]
        if not isinstance(shape, list) or not all(_is_int(s) and s >= 0 for s in shape):
            raise CheckpointError(f"{where}: 'shape' must be a list of non-negative integers, "
                                  f"got {shape!r}")
        parse_dtype(entry["dtype"], where)
    dim = manifest.get("condition_dim")
    if dim is not None and not (_is_int(dim) and dim >= 1):
        raise CheckpointError(f"{path}: condition_dim must be null or a positive int, "
                              f"got {dim!r}")
    seen: dict[str, int] = {}
    for i, e in enumerate(manifest["checkpoints"]):
        where = f"{path}: checkpoints[{i}]"
        if not isinstance(e, dict) or not isinstance(e.get("file"), str) or not e["file"]:
            raise CheckpointError(f"{where} needs a 'file' string")
        rel = Path(e["file"])
        if rel.is_absolute() or ".." in rel.parts or e["file"] == MANIFEST or "\x00" in e["file"]:
            raise CheckpointError(f"{where}: file {e['file']!r} must be a checkpoint file inside "
                                  f"{path.parent}")
        if e["file"] in seen:
            raise CheckpointError(f"{where}: file {e['file']!r} is already listed as "
                                  f"checkpoints[{seen[e['file']]}]")
        seen[e["file"]] = i
        if "run" in e and not _is_int(e["run"]):
            raise CheckpointError(f"{where}: 'run' must be an int, got {e['run']!r}")
        for field in ("metrics", "provenance"):
            if e.get(field) is not None and not isinstance(e[field], dict):
                raise CheckpointError(f"{where}: {field!r} must be a JSON object or null, "
                                      f"got {type(e[field]).__name__}")
        cond = e.get("condition")
        if cond is not None and not (isinstance(cond, list) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in cond)):
            raise CheckpointError(f"{where}: 'condition' must be a list of numbers or null, "
                                  f"got {cond!r}"[:300])


def is_checkpoint_folder(directory: str | os.PathLike) -> bool:
    """Whether `directory` holds a paramgen CheckpointSet manifest (it may still be damaged)."""
    path = Path(directory) / MANIFEST
    try:
        head = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(head, dict) and head.get("format") == FORMAT


def _spec_from_manifest(manifest: Mapping[str, Any], where: str) -> Spec:
    spec: Spec = {}
    for key, entry in manifest["keys"].items():
        if not isinstance(entry, dict) or "shape" not in entry or "dtype" not in entry:
            raise CheckpointError(f"{where}: keys[{key!r}] needs 'shape' and 'dtype'")
        spec[key] = (tuple(entry["shape"]), parse_dtype(entry["dtype"], f"{where}: keys[{key!r}]"))
    return spec


def _spec_to_manifest(spec: Spec) -> dict[str, Any]:
    return {k: {"shape": list(shape), "dtype": dtype_name(dt)} for k, (shape, dt) in spec.items()}


def _condition_row(cond: Any, dim: int | None, where: str) -> torch.Tensor | None:
    """A condition as a float32 vector of length `dim` (None when the set is unconditional)."""
    if cond is None:
        if dim is not None:
            raise CheckpointError(f"{where}: condition is missing but the set has "
                                  f"condition_dim={dim}")
        return None
    t = torch.as_tensor(cond, dtype=torch.float32).detach().cpu()
    if t.ndim != 1:
        raise CheckpointError(f"{where}: condition must be a vector, got shape {list(t.shape)}")
    if dim is None:
        raise CheckpointError(f"{where}: condition given but the set is unconditional "
                              f"(condition_dim is null)")
    if t.numel() != dim:
        raise CheckpointError(f"{where}: condition has {t.numel()} values, expected "
                              f"condition_dim={dim}")
    if not bool(torch.isfinite(t).all()):
        raise CheckpointError(f"{where}: condition holds non-finite values")
    return t


# ----------------------------------------------------------------------------- CheckpointSet

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
            s = _spec_of(sd, names[i])
            if spec is None:
                if not s:
                    raise CheckpointError(f"{names[i]}: state dict has no tensors")
                spec = s
            else:
                _compare_spec(s, spec, names[i], names[0])
            _check_finite(sd, names[i])
            # Copy: callers often pass model.state_dict(), which aliases live parameters that the
            # next optimizer step would change under us. Keys in the first checkpoint's order, so
            # every item iterates alike whatever order its source had.
            items.append({k: sd[k].detach().to("cpu", copy=True) for k in spec})
        assert spec is not None
        cond = cls._conditions_tensor(conditions, n)
        runs_l = cls._meta_list(runs, n, "runs", default=0)
        runs_l = [cls._as_run(r, f"runs[{i}]") for i, r in enumerate(runs_l)]
        metrics_l = [cls._meta_dict(m, f"metrics[{i}]")
                     for i, m in enumerate(cls._meta_list(metrics, n, "metrics", default=None))]
        prov_l = [cls._meta_dict(p, f"provenance[{i}]")
                  for i, p in enumerate(cls._meta_list(provenance, n, "provenance", default=None))]
        info_d = dict(_jsonable(dict(info or {}), "info"))
        return cls(items, spec, cond, runs_l, metrics_l, prov_l, info_d)

    @classmethod
    def import_peft(cls, adapter_dirs: Sequence[str | os.PathLike] | str | os.PathLike,
                    conditions: Any = None) -> "CheckpointSet":
        """PEFT adapter folders as a set: each adapter_model.safetensors is a checkpoint, the
        adapter_config.json is kept in info["peft_config"] (see paramgen.adapters.importer)."""
        from paramgen.adapters.importer import import_peft

        return import_peft(adapter_dirs, conditions=conditions)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "CheckpointSet":
        """Open a CheckpointSet folder. Reads the manifest and every file's header now (so layout
        errors surface at once, naming the file); tensor data is read on access."""
        directory = Path(directory)
        manifest = _read_manifest(directory)
        mpath = directory / MANIFEST
        spec = _spec_from_manifest(manifest, str(mpath))
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
            _compare_spec(_read_safetensors_header(path), spec, str(path), f"the manifest {mpath}")
            rows.append(_condition_row(e.get("condition"), dim, f"{where} ({e['file']})"))
            runs.append(cls._as_run(e.get("run", 0), f"{where}.run"))
            metrics.append(dict(e.get("metrics") or {}))
            prov.append(dict(e.get("provenance") or {}))
            items.append(path)
        cond = None if dim is None else torch.stack(rows)  # type: ignore[arg-type]
        return cls(items, spec, cond, runs, metrics, prov, dict(manifest["info"]))

    @classmethod
    def import_folder(cls, directory: str | os.PathLike, allow_pickle: bool = False,
                      info: Mapping[str, Any] | None = None) -> "CheckpointSet":
        """Read a folder of `.safetensors` / `.pt` / `.pth` state dicts (sorted by file name).

        `.pt`/`.pth` files are pickles, which can run code when read; they are refused unless
        `allow_pickle=True`, and even then read with `torch.load(weights_only=True)`. Wrappers such
        as {"state_dict": sd, ...} or {"model": sd, ...} are unwrapped. Each checkpoint's
        provenance records its source file name.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"checkpoint folder {directory} does not exist")
        files = sorted(p for p in directory.iterdir()
                       if p.is_file() and p.suffix in _SAFE_SUFFIXES + _PICKLE_SUFFIXES)
        if not files:
            raise CheckpointError(f"{directory}: no .safetensors, .pt or .pth files to import")
        pickled = [p.name for p in files if p.suffix in _PICKLE_SUFFIXES]
        if pickled and not allow_pickle:
            raise CheckpointError(
                f"{directory}: {_fmt_keys(pickled, 3)} are pickle files, which can execute code "
                "when loaded, so they are not read by default. If you trust them, opt in with "
                "allow_pickle=True; they are then read with "
                "torch.load(weights_only=True). Or convert them to .safetensors.")
        sds = []
        for p in files:
            if p.suffix in _SAFE_SUFFIXES:
                sds.append(_load_safetensors(p))
                continue
            try:
                obj = torch.load(p, map_location="cpu", weights_only=True)
            except Exception as exc:  # pickle errors come in many types
                raise CheckpointError(f"{p}: could not be read with torch.load(weights_only=True) "
                                      f"({type(exc).__name__}: {exc})") from exc
            sds.append(_unwrap(obj, str(p)))
        return cls.from_state_dicts(sds, provenance=[{"source": p.name} for p in files],
                                    info=info, _names=[str(p) for p in files])

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
                    old_files = {e["file"] for e in _read_manifest(directory)["checkpoints"]}
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
                if _CKPT_NAME.fullmatch(stale) and p.is_file() and not p.is_symlink():
                    p.unlink()
        return directory

    def _entry(self, name: str, i: int) -> dict[str, Any]:
        cond = self.condition(i)
        return {"file": name, "run": self._runs[i],
                "condition": None if cond is None else cond.tolist(),
                "metrics": self._metrics[i], "provenance": self._provenance[i]}

    def _manifest(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION,
                "keys": _spec_to_manifest(self._spec), "condition_dim": self.condition_dim,
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
        sd = _load_safetensors(path)
        _compare_spec(_spec_of(sd, str(path)), self._spec, str(path), "the manifest")
        _check_finite(sd, str(path))
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
        return None if self._conditions is None else int(self._conditions.shape[1])

    def run(self, i: int) -> int:
        return self._runs[self._index(i)]

    @property
    def runs(self) -> list[int]:
        return list(self._runs)

    def metrics(self, i: int) -> dict[str, Any]:
        return copy.deepcopy(self._metrics[self._index(i)])

    def provenance(self, i: int) -> dict[str, Any]:
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
        return list(self._spec)

    @property
    def num_params(self) -> int:
        """Number of floating-point elements per checkpoint (integer buffers are not generated)."""
        return sum(math.prod(shape) for shape, dt in self._spec.values() if _is_float(dt))

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
                           f"keys: {_fmt_keys(self._spec)}")
        out = []
        for item in self._items:
            if isinstance(item, dict):
                out.append(item[key])
                continue
            try:
                with safe_open(str(item), framework="pt") as f:
                    t = f.get_tensor(key)
            except Exception as exc:
                raise CheckpointError(f"{item}: cannot read key {key!r} ({exc})") from exc
            _compare_spec({key: (tuple(t.shape), t.dtype)}, {key: self._spec[key]}, str(item),
                          "the manifest")
            _check_finite({key: t}, str(item))
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
    def _as_run(r: Any, where: str) -> int:
        try:
            return operator.index(r)
        except TypeError:
            raise CheckpointError(f"{where}: run must be an int, got {r!r}") from None

    @staticmethod
    def _meta_dict(value: Any, where: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise CheckpointError(f"{where}: expected a dict, got {type(value).__name__}")
        return dict(_jsonable(value, where))

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


# ----------------------------------------------------------------------------- writer

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
            _check_same_settings(_read_manifest(self.directory),
                                 dict(_jsonable(dict(info), "info")), self.directory / MANIFEST)
        # Held until close(): a second writer (another process collecting into this folder)
        # waits, then continues from what this one wrote instead of overwriting it.
        self._lock = io.FolderLock(self.directory).acquire()
        try:
            self._open(info)
        except BaseException:
            self._lock.release()
            raise

    def _open(self, info: Mapping[str, Any] | None) -> None:
        self._info = dict(_jsonable(dict(info or {}), "info"))
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
        manifest = _read_manifest(self.directory)
        mpath = self.directory / MANIFEST
        if self._info:
            _check_same_settings(manifest, self._info, mpath)
        self._info = dict(manifest["info"])
        self._entries = list(manifest["checkpoints"])
        if self._entries:
            self._spec = _spec_from_manifest(manifest, str(mpath))
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
        return copy.deepcopy(self._info)

    def provenance(self, i: int) -> dict[str, Any]:
        return copy.deepcopy(self._entries[i].get("provenance") or {})

    @property
    def provenances(self) -> list[dict[str, Any]]:
        """Provenance of every checkpoint written so far, in order."""
        return [copy.deepcopy(e.get("provenance") or {}) for e in self._entries]

    @property
    def runs(self) -> list[int]:
        return [int(e.get("run", 0)) for e in self._entries]

    def metrics(self, i: int) -> dict[str, Any]:
        return copy.deepcopy(self._entries[i].get("metrics") or {})

    def add(self, sd: Mapping[str, torch.Tensor], run: int = 0, condition: Any = None,
            metrics: Mapping[str, Any] | None = None, provenance: Mapping[str, Any] | None = None,
            flush: bool = True) -> int:
        """Write one checkpoint; returns its index. With flush=False the manifest is written only
        by a later `flush()` (or flushing add): use it to add a batch with one manifest write."""
        i = len(self._entries)
        name = f"ckpt_{i:05d}.safetensors"
        where = f"{self.directory / name}"
        spec = _spec_of(sd, where)
        if self._spec is None:
            if not spec:
                raise CheckpointError(f"{where}: state dict has no tensors")
            self._spec = spec
        else:
            _compare_spec(spec, self._spec, where, "earlier checkpoints in this folder")
        _check_finite(sd, where)
        cond_t = None if condition is None else torch.as_tensor(condition, dtype=torch.float32)
        if not self._dim_known:
            self._dim = None if cond_t is None else int(cond_t.reshape(-1).numel())
            self._dim_known = True
        cond_row = _condition_row(cond_t, self._dim, where)
        entry = {"file": name, "run": CheckpointSet._as_run(run, f"{where}: run"),
                 "condition": None if cond_row is None else cond_row.tolist(),
                 "metrics": _jsonable(dict(metrics or {}), f"{where}: metrics"),
                 "provenance": _jsonable(dict(provenance or {}), f"{where}: provenance")}
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
            "keys": _spec_to_manifest(self._spec or {}), "condition_dim": self._dim,
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
