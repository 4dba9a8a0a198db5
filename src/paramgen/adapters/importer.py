"""PEFT folders trained anywhere, as a CheckpointSet a generator can learn from.

Each folder's ``adapter_model.safetensors`` is one checkpoint; its ``adapter_config.json`` goes
to ``info["peft_config"]`` so that generated samples can be written back as PEFT folders. The
folders must describe one adapter layout: configs that differ in anything but bookkeeping
(the base model's name or revision, inference mode, peft's version) are refused, naming the
folder and key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch

from paramgen.adapters.folders import read_peft_folder
from paramgen.checkpoints import CheckpointError, CheckpointSet
from paramgen.data import parse_bits

__all__ = ["import_peft"]

# Keys of adapter_config.json that do not change which tensors an adapter holds or what they do.
_BOOKKEEPING = {"base_model_name_or_path", "revision", "inference_mode", "peft_version",
                "auto_mapping"}


def _condition_rows(conditions: Any, n: int) -> tuple[Any, list[str | None]]:
    """Conditions as floats (bit strings such as "0101010101" allowed) and each row's bits."""
    if conditions is None:
        return None, [None] * n
    if isinstance(conditions, torch.Tensor):
        return conditions, [None] * n
    rows, bits = [], []
    for i, c in enumerate(list(conditions)):
        if isinstance(c, str):
            try:
                b = parse_bits(c, num_classes=None)
            except ValueError as exc:
                raise ValueError(f"conditions[{i}]: {exc}") from None
            rows.append([float(ch) for ch in b])
            bits.append(b)
        else:
            rows.append(c)
            bits.append(None)
    return rows, bits


def import_peft(adapter_dirs: Sequence[str | os.PathLike] | str | os.PathLike,
                conditions: Any = None, info: dict[str, Any] | None = None) -> CheckpointSet:
    """A CheckpointSet of PEFT adapter folders (one checkpoint each, in the given order).

    ``conditions``: None, one row per folder (floats or task bit strings), or an [N, C] tensor.
    ``info`` adds collection-level entries (e.g. ``{"data": "digits"}``).
    """
    if isinstance(adapter_dirs, (str, os.PathLike)):
        adapter_dirs = [adapter_dirs]
    dirs = [Path(d) for d in adapter_dirs]
    if not dirs:
        raise ValueError("import_peft: no adapter folders given")
    states, first_cfg = [], None
    for d in dirs:
        state, cfg = read_peft_folder(d)
        if first_cfg is None:
            first_cfg = cfg
        else:
            keys = sorted((set(cfg) | set(first_cfg)) - _BOOKKEEPING)
            # every differing key, so a rank that differs is named even when alpha follows it
            diff = [f"{k!r} is {cfg.get(k)!r}, not {first_cfg.get(k)!r}" for k in keys
                    if cfg.get(k) != first_cfg.get(k)]
            if diff:
                raise CheckpointError(
                    f"{d / 'adapter_config.json'}: {'; '.join(diff)} as in "
                    f"{dirs[0] / 'adapter_config.json'}; one collection holds adapters of one "
                    "layout")
        states.append(state)
    rows, bits = _condition_rows(conditions, len(dirs))
    provenance = [{"peft_dir": str(d.resolve()), **({"task": b} if b else {})}
                  for d, b in zip(dirs, bits)]
    full_info = {"kind": "peft_adapters", "peft_config": first_cfg, **(info or {})}
    names = [str(d / "adapter_model.safetensors") for d in dirs]
    return CheckpointSet.from_state_dicts(states, conditions=rows, provenance=provenance,
                                          info=full_info, _names=names)
