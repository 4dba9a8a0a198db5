"""What sampling accepts: a dataset name in canonical form, and ``like`` as a state dict."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from safetensors.torch import load_file
from torch import Tensor, nn


def canon_dataset(name: str | None) -> str | None:
    if name is None:
        return None
    from paramgen import data

    try:
        return data.loaders.canonical_name(name)
    except ValueError:
        return " ".join(name.lower().split())


def as_state_dict(like: Any) -> dict[str, Tensor]:
    if isinstance(like, nn.Module):
        return {k: v.detach().cpu() for k, v in like.state_dict().items()}
    if isinstance(like, Mapping) and all(isinstance(v, Tensor) for v in like.values()):
        return dict(like)
    if isinstance(like, (str, os.PathLike)):
        path = Path(like)
        if not path.is_file():
            raise FileNotFoundError(f"like={str(like)!r}: no such file")
        if path.suffix != ".safetensors":
            raise ValueError(f"like={str(like)!r}: give a .safetensors state dict, a state dict "
                             "or an nn.Module")
        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors' own error types; name the file the user gave
            raise ValueError(f"like={str(like)!r}: not a readable .safetensors file "
                             f"({type(exc).__name__}: {exc})") from None
    raise ValueError("like= must be a state dict (str -> Tensor), an nn.Module or a "
                     f".safetensors path, got {type(like).__name__}")
