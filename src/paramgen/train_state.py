"""Training state on disk without pickle: one safetensors file, committed in one atomic step.

A training state (network weights, optimizer moments, step, history) is a nested structure of
dicts, lists, numbers, strings and tensors. :func:`save` writes it to ONE file,
``train_state.safetensors``: the tensors as its tensors, and the rest (with a placeholder where
each tensor was) as JSON in the file's header metadata, beside a checksum of the tensors' bytes.
The file is filled under a temporary name, synced, renamed into place and its folder synced: a
crash or ``kill -9`` at any instant leaves either the previous save or the new one, never a mix
(the earlier format, a weights file plus a JSON file naming its checksum, took two renames and
a kill between them left a pair that refused to resume). :func:`load` puts the state back
together; it never runs code from the file, so a shared or downloaded workdir is as safe to
resume as a generator folder is to load. States saved by earlier versions (``train_state.json``
beside the weights) still load, and the next save replaces them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from paramgen import io
from paramgen.durable import fsync_folder

FORMAT = "paramgen.train_state"
FORMAT_VERSION = 2
FILE = "train_state.safetensors"
LEGACY_JSON = "train_state.json"  # format 1: the skeleton beside the weights, in its own file
_TENSOR = "__tensor__"
_INT_KEYS = "__int_keys__"


def _split(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        name = prefix or "tensor"
        tensors[name] = obj.detach().cpu()
        return {_TENSOR: name}
    if isinstance(obj, dict):
        int_keys = all(isinstance(k, int) for k in obj) and obj
        out = {str(k): _split(v, f"{prefix}.{k}" if prefix else str(k), tensors)
               for k, v in obj.items()}
        if int_keys:  # optimizer state is keyed by parameter index
            out[_INT_KEYS] = True
        return out
    if isinstance(obj, (list, tuple)):
        return [_split(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix!r} in a training state")


def _join(obj: Any, tensors: dict[str, torch.Tensor], where: str) -> Any:
    if isinstance(obj, dict):
        if _TENSOR in obj:
            name = obj[_TENSOR]
            if name not in tensors:
                raise ValueError(f"{where}: tensor {name!r} is missing from the weights file")
            return tensors[name]
        int_keys = obj.get(_INT_KEYS, False)
        out = {}
        for k, v in obj.items():
            if k == _INT_KEYS:
                continue
            out[int(k) if int_keys else k] = _join(v, tensors, where)
        return out
    if isinstance(obj, list):
        return [_join(v, tensors, where) for v in obj]
    return obj


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 of every tensor's name, dtype, shape and bytes, in name order: what the file's
    header vouches for (it cannot name a checksum of the file that holds it)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode("utf-8"))
        if t.numel():  # the buffer itself, no copy
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def path(workdir: str | os.PathLike) -> Path:
    """The one file a save leaves in ``workdir``."""
    return Path(workdir) / FILE


def paths(workdir: str | os.PathLike) -> tuple[Path, ...]:
    """Every file a save leaves in ``workdir`` (one since format 2)."""
    return (path(workdir),)


def _metadata(file: Path) -> dict[str, str] | None:
    """The header metadata of a safetensors file (None when it is not one)."""
    try:
        with safe_open(str(file), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError, ValueError):
        return None


def _is_current(file: Path) -> bool:
    meta = _metadata(file) if file.is_file() else None
    return meta is not None and meta.get("format") == FORMAT


def exists(workdir: str | os.PathLike) -> bool:
    """Whether ``workdir`` holds a training state to resume (this format or the earlier one),
    or a damaged one that :func:`load` will refuse by name rather than silently start over.
    A readable weights file alone, without a header naming the format, is the first save of an
    earlier version cut short before its JSON: there is nothing to resume, and the next save
    replaces it."""
    file = path(workdir)
    if (Path(workdir) / LEGACY_JSON).is_file():
        return True
    if not file.is_file():
        return False
    meta = _metadata(file)
    return meta is None or meta.get("format") == FORMAT


def save(workdir: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` to ``workdir/train_state.safetensors`` in one atomic, synced step."""
    workdir = Path(workdir)
    target = path(workdir)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split(state, "", tensors)
    # safetensors refuses shared or non-contiguous storage; a state dict often has both. The
    # writer copies one tensor at a time, so the state is never held twice.
    names = sorted(tensors)
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION),
                "tensors_sha256": tensors_digest(tensors),
                "state": json.dumps(skeleton, separators=(",", ":"))}
    entries = [(n, list(tensors[n].shape), tensors[n].dtype) for n in names]
    # The stream writer fills a temporary file, syncs it and renames it into place: the rename
    # is the commit. Syncing the folder makes the rename itself survive a power cut.
    with io.SafetensorsStreamWriter(target, entries, metadata=metadata) as writer:
        for n in names:
            if tensors[n].numel():
                writer.write(n, tensors[n])
    legacy = workdir / LEGACY_JSON
    if legacy.is_file():  # an earlier version's pair: this save supersedes it
        legacy.unlink()
    fsync_folder(workdir)
    return target


def load(workdir: str | os.PathLike) -> dict:
    """Read a state written by :func:`save` (or by an earlier version); a clear ``ValueError``
    for anything else."""
    file = path(workdir)
    if not _is_current(file) and (Path(workdir) / LEGACY_JSON).is_file():
        return _load_legacy(workdir)
    if not file.is_file():
        raise ValueError(f"{file} not found: {workdir} holds no training state")
    meta = _metadata(file)
    if meta is None:
        raise ValueError(f"{file} is not a readable safetensors file; delete it (or run with "
                         "--restart) to start over")
    if meta.get("format") != FORMAT:
        raise ValueError(f"{file} is not a paramgen training state (no format in its header)")
    try:
        version = int(meta.get("format_version", "0"))
    except ValueError:
        version = -1
    if not 1 <= version <= FORMAT_VERSION:
        raise ValueError(f"{file} has format_version {meta.get('format_version')!r}; this "
                         f"paramgen reads up to {FORMAT_VERSION}: upgrade paramgen to resume it")
    try:
        skeleton = json.loads(meta.get("state", ""))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{file}: the state in its header is not valid JSON ({exc}); delete "
                         "it (or run with --restart) to start over") from exc
    try:
        tensors = load_file(str(file))
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{file} is not a readable safetensors file: {exc}") from exc
    if tensors_digest(tensors) != meta.get("tensors_sha256"):
        raise ValueError(f"{file}: its tensors do not match the checksum in its header (a "
                         "damaged or edited file); delete it (or run with --restart) to start "
                         "over")
    return _join(skeleton, tensors, str(file))


def _load_legacy(workdir: str | os.PathLike) -> dict:
    """Format 1: ``train_state.json`` naming the checksum of ``train_state.safetensors``."""
    meta_path, weights_path = Path(workdir) / LEGACY_JSON, path(workdir)
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{meta_path} is not valid JSON ({exc}); delete the workdir's "
                         "train_state.* files to start over") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path} is not a paramgen training state")
    if not weights_path.is_file():
        raise ValueError(f"{weights_path} is missing beside {meta_path}")
    if hashlib.sha256(weights_path.read_bytes()).hexdigest() != meta.get("weights_sha256"):
        raise ValueError(f"{weights_path} does not match the checksum in {meta_path} (a save of "
                         "an earlier paramgen version cut short, or an edited file); delete the "
                         "workdir's train_state.* files (or run with --restart) to start over")
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{weights_path} is not a readable safetensors file: {exc}") from exc
    return _join(meta.get("state"), tensors, str(meta_path))


def _partial(workdir: Path) -> Iterable[Path]:
    """Temporary files of saves cut short (the writer names them ``.FILE.*.tmp``)."""
    return workdir.glob(f".{FILE}.*.tmp") if workdir.is_dir() else ()


def discard_partial(workdir: str | os.PathLike) -> list[Path]:
    """Delete what saves killed mid-write left (their temporary files). Call it when a run
    starts, before it saves: a file of a save in progress in another process would go too."""
    removed = []
    for p in _partial(Path(workdir)):
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def remove(workdir: str | os.PathLike) -> list[Path]:
    """Delete the training state files paramgen wrote in ``workdir`` (nothing else)."""
    workdir = Path(workdir)
    removed = discard_partial(workdir)
    for p in (path(workdir), workdir / LEGACY_JSON):
        if p.is_file():
            p.unlink()
            removed.append(p)
    return removed
