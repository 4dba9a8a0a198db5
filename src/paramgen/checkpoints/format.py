"""The CheckpointSet folder format: manifest schema, its validation, and the checks every
state dict passes (layout, finite values, JSON-able metadata).

On disk a set is a folder (see docs/architecture.md, "CheckpointSet folder")::

    DIR/manifest.json
    DIR/ckpt_00000.safetensors ...

The manifest is the single source of truth: it lists every checkpoint file in order with its run,
condition, metrics and provenance, and the expected key -> (shape, dtype) layout. Checkpoint files
are written first and the manifest last, each atomically, so a reader that sees a manifest always
sees every file it names complete.
"""

from __future__ import annotations

import json
import math
import operator
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from paramgen import io

MANIFEST = "manifest.json"
FORMAT = "paramgen.checkpointset"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)

# File types a folder import understands; pickle-based ones need an explicit opt-in.
SAFE_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pt", ".pth")


class CheckpointError(ValueError):
    """A checkpoint set (in memory or on disk) is malformed; the message names the file and key.

    A subclass of ValueError so that callers (and the command line) that handle bad input as
    ValueError keep working.
    """


class MissingCheckpointFile(CheckpointError, FileNotFoundError):
    """A file the manifest lists is not there (a ValueError and a FileNotFoundError)."""



Spec = dict[str, tuple[tuple[int, ...], torch.dtype]]
# The file names paramgen gives checkpoints; `save` deletes stale files of this form only.
CKPT_NAME = re.compile(r"ckpt_\d{5,}\.safetensors")



# ----------------------------------------------------------------------------- helpers

dtype_name = io.dtype_name


def parse_dtype(name: str, where: str = "manifest") -> torch.dtype:
    """`io.parse_dtype`, raising CheckpointError naming `where` for an unknown name."""
    try:
        return io.parse_dtype(name, where)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None


def is_float(dtype: torch.dtype) -> bool:
    return dtype.is_floating_point or dtype.is_complex


def jsonable(value: Any, where: str) -> Any:
    """Convert tensors, numpy scalars and tuples to plain JSON values, or say what cannot be."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        # JSON has no NaN/Inf; Python would write a non-standard token other readers reject.
        if not math.isfinite(value):
            raise CheckpointError(f"{where}: value {value!r} is not finite and cannot be stored")
        return value
    if isinstance(value, torch.Tensor):
        return jsonable(value.detach().cpu().tolist(), where)
    if hasattr(value, "item") and hasattr(value, "dtype") and getattr(value, "ndim", 1) == 0:
        return jsonable(value.item(), where)  # numpy scalar
    if hasattr(value, "tolist") and hasattr(value, "dtype"):
        return jsonable(value.tolist(), where)  # numpy array
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise CheckpointError(f"{where}: value of type {type(value).__name__} cannot be stored as JSON")


def spec_of(sd: Mapping[str, torch.Tensor], where: str) -> Spec:
    spec: Spec = {}
    for key, t in sd.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{where}: key {key!r} is not a string")
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"{where}: key {key!r} holds a {type(t).__name__}, not a tensor")
        spec[key] = (tuple(t.shape), t.dtype)
    return spec


def fmt_keys(keys: Iterable[str], limit: int = 8) -> str:
    keys = sorted(keys)
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def compare_spec(spec: Spec, expected: Spec, where: str, reference: str) -> None:
    """Raise a CheckpointError that says exactly how `spec` (at `where`) differs from `expected`."""
    missing = expected.keys() - spec.keys()
    extra = spec.keys() - expected.keys()
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing keys {fmt_keys(missing)}")
        if extra:
            parts.append(f"extra keys {fmt_keys(extra)}")
        raise CheckpointError(f"{where}: keys differ from {reference}: " + "; ".join(parts))
    for key, (shape, dtype) in expected.items():
        got_shape, got_dtype = spec[key]
        if got_shape != shape:
            raise CheckpointError(f"{where}: key {key!r} has shape {list(got_shape)}, "
                                  f"but {reference} has {list(shape)}")
        if got_dtype != dtype:
            raise CheckpointError(f"{where}: key {key!r} has dtype {dtype_name(got_dtype)}, "
                                  f"but {reference} has {dtype_name(dtype)}")


def check_finite(sd: Mapping[str, torch.Tensor], where: str) -> None:
    for key, t in sd.items():
        if is_float(t.dtype) and t.numel() and not bool(torch.isfinite(t).all()):
            n_nan = int(torch.isnan(t).sum())
            n_inf = int(torch.isinf(t).sum())
            raise CheckpointError(f"{where}: key {key!r} holds non-finite values "
                                  f"({n_nan} NaN, {n_inf} Inf of {t.numel()})")


def _no_constant(token: str) -> Any:
    raise ValueError(f"{token} is not a JSON value")


def read_manifest(directory: Path) -> dict[str, Any]:
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"{directory} is a file; a CheckpointSet is a folder holding "
                              f"{MANIFEST} and .safetensors files")
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint folder {directory} does not exist")
    path = directory / MANIFEST
    if not path.exists():
        hint = ""
        if any(p.suffix in SAFE_SUFFIXES + PICKLE_SUFFIXES for p in directory.iterdir()):
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
    check_manifest(manifest, path)
    return manifest


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_manifest(manifest: Any, path: Path) -> None:
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


def spec_from_manifest(manifest: Mapping[str, Any], where: str) -> Spec:
    spec: Spec = {}
    for key, entry in manifest["keys"].items():
        if not isinstance(entry, dict) or "shape" not in entry or "dtype" not in entry:
            raise CheckpointError(f"{where}: keys[{key!r}] needs 'shape' and 'dtype'")
        spec[key] = (tuple(entry["shape"]), parse_dtype(entry["dtype"], f"{where}: keys[{key!r}]"))
    return spec


def spec_to_manifest(spec: Spec) -> dict[str, Any]:
    return {k: {"shape": list(shape), "dtype": dtype_name(dt)} for k, (shape, dt) in spec.items()}


def condition_row(cond: Any, dim: int | None, where: str) -> torch.Tensor | None:
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


def as_run(r: Any, where: str) -> int:
    """A checkpoint's run id as an int, or a CheckpointError naming `where`."""
    try:
        return operator.index(r)
    except TypeError:
        raise CheckpointError(f"{where}: run must be an int, got {r!r}") from None
