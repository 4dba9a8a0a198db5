"""PEFT's folder format: ``adapter_config.json`` + ``adapter_model.safetensors``.

These are the files ``peft.PeftModel.from_pretrained(base, folder)`` reads. Both are written
atomically (weights first, config last, so a folder with a config is complete); a folder is read
without unpickling anything (a ``.bin`` adapter is refused with a way out).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from paramgen import io
from paramgen.checkpoints import CheckpointError, read_safetensors

__all__ = ["ADAPTER_CONFIG", "ADAPTER_WEIGHTS", "read_adapter_config", "read_peft_folder",
           "write_peft_folder"]

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def write_peft_folder(directory: str | os.PathLike, state_dict: Mapping[str, torch.Tensor],
                      config: Mapping[str, Any], metadata: dict[str, str] | None = None) -> Path:
    """Write one adapter as a PEFT folder; returns the folder."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{directory} exists and is not a folder: cannot write an adapter there")
    io.save_safetensors(directory / ADAPTER_WEIGHTS, state_dict,
                        metadata={"format": "pt", **(metadata or {})})
    io.write_text(directory / ADAPTER_CONFIG, json.dumps(dict(config), indent=2, sort_keys=True))
    return directory


def read_adapter_config(path: str | os.PathLike) -> dict[str, Any]:
    """A PEFT ``adapter_config.json``; CheckpointError naming the file if it is not one."""
    path = Path(path)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(config, dict) or "peft_type" not in config:
        raise CheckpointError(f"{path}: not a PEFT adapter config (no 'peft_type' key)")
    return config


def read_peft_folder(directory: str | os.PathLike) -> tuple[dict[str, torch.Tensor],
                                                            dict[str, Any]]:
    """(adapter weights, adapter config) of a PEFT folder; clear errors for anything else."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"PEFT adapter folder {directory} does not exist")
    cfg_path, weights = directory / ADAPTER_CONFIG, directory / ADAPTER_WEIGHTS
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path} is missing: {directory} is not a PEFT adapter folder")
    if not weights.is_file():
        hint = ""
        if (directory / "adapter_model.bin").is_file():
            hint = ("; it holds adapter_model.bin, a pickle, which paramgen does not unpickle: "
                    "load it with peft and save it again (safe_serialization=True)")
        raise FileNotFoundError(f"{weights} is missing{hint}")
    config = read_adapter_config(cfg_path)
    state = read_safetensors(weights)
    if not state:
        raise CheckpointError(f"{weights}: holds no tensors")
    return state, config
