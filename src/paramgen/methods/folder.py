"""The generator folder, the same for every method: ``config.json`` + ``model.safetensors``.

``config.json`` holds everything needed to rebuild the generator (format and version, method,
preset, config, conditions, partial-generation keys, collection info, the method's own entries)
and the SHA-256 of ``model.safetensors``; the weights are written first, so a config never names
weights that are not there. Reading checks what it reads: the format and version, the method,
the weights' checksum, that every tensor is finite, and that every tensor a network needs is
present with its shape (:func:`load_module`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from paramgen import pretrained
from paramgen.durable import read_committed_json, write_pair
from paramgen.methods.registry import get_method

if TYPE_CHECKING:  # typing only: base.py imports this module
    from paramgen.methods.base import Generator

FORMAT = "paramgen.generator"
FORMAT_VERSION = 1


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_generator(gen: "Generator", path: str | os.PathLike) -> Path:
    """Write ``model.safetensors`` and ``config.json`` (which names the weights' checksum),
    crash-consistently (:func:`paramgen.durable.write_pair`)."""
    path = Path(path)
    tensors = dict(gen._saved_tensors())
    tensors.update({f"reference.{k}": v for k, v in gen.reference.items()})
    config = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "method": gen.method,
        "preset": gen.preset, "config": gen.config.to_dict(),
        "condition_dim": gen._condition_dim,
        "condition_range": list(gen._condition_range) if gen._condition_range else None,
        "generated_keys": gen.generated_keys, "key_order": gen.key_order,
        "collection_info": gen.collection_info,
        **gen._saved_config(),
    }
    write_pair(path / "model.safetensors", tensors, path / "config.json", config)
    return path


def read_generator(cls: type, path: str | os.PathLike) -> Any:
    """A ``cls`` generator rebuilt from a folder written by :func:`write_generator` (or the name
    of a generator shipped with paramgen, :mod:`paramgen.pretrained`)."""
    path = pretrained.resolve(path)
    config = read_config(path, cls.method)
    tensors = read_weights(path, config)
    where = path / "config.json"
    try:
        gen = cls(config=cls.config_cls.from_dict(config["config"]))
    except KeyError as exc:
        raise ValueError(f"{where} lacks the entry {exc}") from exc
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    gen.preset = config.get("preset")
    gen.collection_info = pretrained.localize(dict(config.get("collection_info") or {}), path)
    gen._condition_dim = config.get("condition_dim")
    rng = config.get("condition_range")
    gen._condition_range = tuple(rng) if rng else None
    gen.generated_keys = list(config.get("generated_keys") or [])
    gen.key_order = list(config.get("key_order") or [])
    generated = set(gen.generated_keys)
    gen.reference = {k: tensors[f"reference.{k}"] for k in gen.key_order
                     if k not in generated and f"reference.{k}" in tensors}
    try:
        gen._restore(config, tensors, path)
    except KeyError as exc:
        raise ValueError(f"{where} lacks the entry {exc}") from exc
    return gen


def read_config(path: str | os.PathLike, method: str | None = None) -> dict:
    """A generator folder's ``config.json``, checked (format, version, ``method`` if given);
    ``path`` may name a shipped generator (a path that exists wins)."""
    path = pretrained.resolve(path)
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path} not found: {path} is not a saved generator "
                                "(save one with save_pretrained or `paramgen train`)")
    try:
        config = read_committed_json(cfg_path, path / "model.safetensors")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{cfg_path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        got = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise ValueError(f"{cfg_path} is not a paramgen generator config (format {got!r})")
    version = config.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"{cfg_path} has format_version {version!r}; this paramgen reads up to "
                         f"{FORMAT_VERSION}: upgrade paramgen")
    if not isinstance(config.get("config"), dict):
        raise ValueError(f"{cfg_path}: 'config' must be a mapping of settings")
    if method is not None and config.get("method") != method:
        raise ValueError(f"{cfg_path} holds a {config.get('method')!r} generator, not {method!r}")
    return config


def read_weights(path: Path, config: dict) -> dict[str, Tensor]:
    """model.safetensors beside a config: checksum, readability, finite values."""
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found beside {path / 'config.json'}")
    digest = config.get("weights_sha256")
    if digest is not None and sha256(weights) != digest:
        raise ValueError(f"{weights} does not match the checksum in {path / 'config.json'}: "
                         "the file was changed or damaged after it was saved")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{weights} is not a readable safetensors file: {exc}") from exc
    for k, v in tensors.items():
        if v.is_floating_point() and v.numel() and not torch.isfinite(v).all():
            raise ValueError(f"{weights}: tensor {k!r} holds NaN or infinite values")
    return tensors


def load_generator(path: str | os.PathLike) -> Any:
    """Load any saved generator, whatever its method: a folder, or the name of a generator that
    ships with paramgen (``"digits-tasks"``; a path that exists wins over a name)."""
    path = pretrained.resolve(path)
    config = read_config(path)
    name = config.get("method")
    try:
        cls = get_method(str(name))
    except ValueError as exc:
        raise ValueError(f"{Path(path) / 'config.json'}: {exc}") from exc
    return cls.from_pretrained(path)


def load_module(module: torch.nn.Module, tensors: Mapping[str, Tensor], prefix: str,
                where: Path) -> None:
    """Load the ``prefix.*`` tensors of a generator folder into a freshly built module, exactly:
    every name present and of its shape, nothing extra."""
    own = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
    want = module.state_dict()
    missing = sorted(set(want) - set(own))
    unexpected = sorted(set(own) - set(want))
    wrong = sorted(k for k in set(want) & set(own) if want[k].shape != own[k].shape)
    if missing or unexpected or wrong:
        raise ValueError(f"{where / 'model.safetensors'} does not match its config.json "
                         f"({prefix}): missing {missing[:5]}, unexpected {unexpected[:5]}, "
                         f"wrong shape {wrong[:5]}")
    module.load_state_dict(own)
    module.eval()
