"""Training state on disk without pickle: tensors in safetensors, everything else in JSON.

A training state (network weights, optimizer moments, step, history) is a nested structure of
dicts, lists, numbers, strings and tensors. :func:`save` writes its tensors to
``train_state.safetensors`` and the rest, with a placeholder where each tensor was, to
``train_state.json``; :func:`load` puts them back together. Loading never runs code from the
files, so a shared or downloaded workdir is as safe to resume as a generator folder is to load.
The JSON file is written last and names the weights' checksum: a reader that finds the two
files out of step (a crash between the writes) refuses them instead of mixing two saves.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from paramgen import io

FORMAT = "paramgen.train_state"
FORMAT_VERSION = 1
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


def paths(workdir: str | os.PathLike) -> tuple[Path, Path]:
    workdir = Path(workdir)
    return workdir / "train_state.json", workdir / "train_state.safetensors"


def exists(workdir: str | os.PathLike) -> bool:
    return paths(workdir)[0].is_file()


def save(workdir: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` atomically (weights first, then the JSON that names their checksum)."""
    meta_path, weights_path = paths(workdir)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split(state, "", tensors)
    io.save_safetensors(weights_path, tensors)
    digest = hashlib.sha256(weights_path.read_bytes()).hexdigest()
    io.write_json(meta_path, {"format": FORMAT, "format_version": FORMAT_VERSION,
                              "weights_sha256": digest, "state": skeleton})
    return meta_path


def load(workdir: str | os.PathLike) -> dict:
    """Read a state written by :func:`save`; a clear ``ValueError`` for anything else."""
    meta_path, weights_path = paths(workdir)
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{meta_path} is not valid JSON ({exc}); delete the workdir's "
                         "train_state.* files to start over") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path} is not a paramgen training state")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(f"{meta_path} was written by a newer paramgen; upgrade to resume it")
    if not weights_path.is_file():
        raise ValueError(f"{weights_path} is missing beside {meta_path}")
    raw = weights_path.read_bytes()
    if hashlib.sha256(raw).hexdigest() != meta.get("weights_sha256"):
        raise ValueError(f"{weights_path} does not match the checksum in {meta_path} (a torn or "
                         "edited save); delete the workdir's train_state.* files to start over")
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{weights_path} is not a readable safetensors file: {exc}") from exc
    return _join(meta.get("state"), tensors, str(meta_path))


def remove(workdir: str | os.PathLike) -> list[Path]:
    """Delete the training state files paramgen wrote in ``workdir`` (nothing else)."""
    removed = []
    for p in paths(workdir):
        if p.is_file():
            p.unlink()
            removed.append(p)
    return removed
