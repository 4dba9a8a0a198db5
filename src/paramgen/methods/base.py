"""The interface every parameter generator shares (RPG, p-diff), and its file format.

A generator folder holds ``config.json`` (everything needed to rebuild it: method, config,
tokenizer layout) and ``model.safetensors``; training state for resume lives apart, in
``workdir/train_state.pt``, so a finished generator folder stays small and clean.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

FORMAT = "paramgen.generator"
FORMAT_VERSION = 1


class Generator(ABC):
    """Learns a distribution over the state dicts of one architecture and samples from it."""

    method: str = ""

    @abstractmethod
    def fit(self, ckpts, steps: int | None = None, seed: int = 0,
            workdir: str | os.PathLike | None = None, progress: bool = True) -> "Generator":
        """Train on a CheckpointSet; with ``workdir``, save periodically and resume from there."""

    @abstractmethod
    def sample(self, n: int, condition: Any = None, seed: int = 0,
               **options: Any) -> list[dict[str, Tensor]]:
        """``n`` new state dicts with exactly the training keys, shapes and dtypes."""

    def sample_to_files(self, paths: Sequence[str | os.PathLike], condition: Any = None,
                        seed: int = 0, metadata: dict[str, str] | None = None,
                        **options: Any) -> list[Path]:
        """Sample ``len(paths)`` models and write each to its ``.safetensors`` path.

        This default holds the models in memory first; RPG overrides it to stream the values
        to disk as they are generated.
        """
        from paramgen import io

        models = self.sample(len(paths), condition=condition, seed=seed, **options)
        return [io.save_safetensors(p, sd, metadata) for p, sd in zip(paths, models)]

    def sample_to_peft(self, out_dirs: Sequence[str | os.PathLike], condition: Any = None,
                       seed: int = 0, **options: Any) -> list[Path]:
        """Sample adapters into PEFT folders (see paramgen.adapters.export.sample_to_peft)."""
        from paramgen.adapters.export import sample_to_peft

        return sample_to_peft(self, out_dirs, condition=condition, seed=seed, **options)

    @abstractmethod
    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` to a folder."""

    @classmethod
    @abstractmethod
    def from_pretrained(cls, path: str | os.PathLike) -> "Generator":
        """Rebuild a generator saved with :meth:`save_pretrained`."""

    # -------------------------------------------------------------------- shared helpers
    @property
    def condition_dim(self) -> int | None:
        return getattr(self, "_condition_dim", None)

    def _conditions(self, condition: Any, n: int, device: torch.device) -> Tensor | None:
        """Validate a user condition and give one row per sample, or None."""
        dim = self.condition_dim
        if condition is None:
            if dim is not None:
                raise ValueError(f"this generator was trained with conditions of size {dim}; "
                                 "pass condition= (e.g. task bits) to sample")
            return None
        if dim is None:
            raise ValueError("this generator was trained without conditions; "
                             "sample it with condition=None")
        if isinstance(condition, str):
            condition = [float(c) for c in condition.strip()]
        if isinstance(condition, (list, tuple)) and condition and isinstance(condition[0], Tensor):
            cond = torch.stack([c.reshape(-1).float() for c in condition])
        else:
            cond = torch.as_tensor(condition, dtype=torch.float32)
        if cond.dim() == 1:
            cond = cond.unsqueeze(0)
        if cond.dim() != 2 or cond.shape[1] != dim:
            raise ValueError(f"condition must have size {dim} (one value per task bit or "
                             f"feature), got shape {tuple(cond.shape)}")
        if cond.shape[0] == 1:
            cond = cond.expand(n, dim)
        elif cond.shape[0] != n:
            raise ValueError(f"got {cond.shape[0]} conditions for n={n} samples; "
                             "give one condition, or one per sample")
        return cond.to(device)


def resolve_config(config_cls, preset: str | None, config: Any, overrides: dict) -> Any:
    """The config a generator is built with: a preset, a config object or dict, plus overrides."""
    import dataclasses

    if config is not None and preset is not None:
        raise ValueError("give either preset= or config=, not both")
    if isinstance(config, dict):
        return config_cls.from_dict({**config, **overrides})
    if config is None:
        return config_cls.from_preset(preset or "cpu", **overrides)
    return dataclasses.replace(config, **overrides) if overrides else config


def read_config(path: str | os.PathLike, method: str | None = None) -> dict:
    path = Path(path)
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path} not found: {path} is not a saved generator "
                                "(save one with save_pretrained or `paramgen train`)")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{cfg_path} is not valid JSON: {exc}") from exc
    if config.get("format") != FORMAT:
        raise ValueError(f"{cfg_path} is not a paramgen generator config (format "
                         f"{config.get('format')!r})")
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{cfg_path} has format_version {config['format_version']}; this "
                         f"paramgen reads up to {FORMAT_VERSION}: upgrade paramgen")
    if method is not None and config.get("method") != method:
        raise ValueError(f"{cfg_path} holds a {config.get('method')!r} generator, not {method!r}")
    return config


def load_generator(path: str | os.PathLike) -> Generator:
    """Load any saved generator, whatever its method."""
    from paramgen.methods import METHODS

    config = read_config(path)
    cls = METHODS.get(config.get("method"))
    if cls is None:
        raise ValueError(f"{Path(path) / 'config.json'}: unknown method {config.get('method')!r}; "
                         f"known: {sorted(METHODS)}")
    return cls.from_pretrained(path)


def pick(seq: Sequence[Any], n: int, generator: torch.Generator) -> list[Any]:
    idx = torch.randint(0, len(seq), (n,), generator=generator).tolist()
    return [seq[i] for i in idx]
