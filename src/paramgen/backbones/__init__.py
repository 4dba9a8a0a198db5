"""Recurrent backbones: a token sequence [B, L, d_in] -> one prototype per token [B, L, d_out].

RPG runs one over (position embedding + permutation state + condition) and feeds each token's
prototype to the denoiser. It is not autoregressive: outputs are never fed back.

>>> from paramgen.backbones import build
>>> net = build("mamba", d_in=256, d_model=256, d_out=256)   # RPG-tiny

Kinds: ``"mamba"`` (default; ``mamba_ssm``'s CUDA kernel when present, pure PyTorch otherwise),
``"lstm"``, ``"transformer"`` (causally masked encoder) and ``"none"`` (per-token MLP: the
recurrence removed, for ablations).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from paramgen.backbones.common import Backbone
from paramgen.backbones.lstm import LSTMBackbone
from paramgen.backbones.mamba import (MambaBackbone, MambaMixer, causal_conv1d_available,
                                      mamba_kernel_available)
from paramgen.backbones.mlp import TokenMLPBackbone
from paramgen.backbones.scan import SCANS, selective_scan
from paramgen.backbones.transformer import TransformerBackbone

__all__ = [
    "BACKBONES",
    "Backbone",
    "LSTMBackbone",
    "MambaBackbone",
    "MambaMixer",
    "SCANS",
    "TokenMLPBackbone",
    "TransformerBackbone",
    "build",
    "causal_conv1d_available",
    "list_backbones",
    "mamba_kernel_available",
    "selective_scan",
]

#: Backbone classes by kind. Each takes ``(d_in, d_model, d_out, num_layers, d_state, d_conv,
#: expand, **kind_specific)``.
BACKBONES: dict[str, type[Backbone]] = {
    "mamba": MambaBackbone,
    "lstm": LSTMBackbone,
    "transformer": TransformerBackbone,
    "none": TokenMLPBackbone,
}


def list_backbones() -> list[str]:
    """Names accepted by :func:`build`, default first."""
    return list(BACKBONES)


def build(kind: str, d_in: int, d_model: int | Sequence[int], d_out: int, num_layers: int = 2,
          d_state: int = 32, d_conv: int = 4, expand: int = 2, *, seed: int | None = None,
          **kw: Any) -> Backbone:
    """Build a backbone by name (``"mamba"`` is RPG's default).

    ``d_model`` is one width for every layer or one per layer (e.g. ``(12288, 16384)``).
    ``seed`` initialises the parameters from that seed without touching the global RNG.
    Extra keywords go to the backbone class (e.g. ``scan="ref"`` for mamba, ``nhead`` for the
    transformer, ``out_scale`` for the head of any kind). The result's ``config`` holds the
    arguments that rebuild it: ``build(**net.config)``.
    """
    try:
        cls = BACKBONES[kind]
    except (KeyError, TypeError):
        raise ValueError(f"unknown backbone {kind!r}; choose one of "
                         f"{', '.join(list_backbones())}") from None
    if not isinstance(d_model, int):
        d_model = tuple(d_model)
    args = dict(d_in=d_in, d_model=d_model, d_out=d_out, num_layers=num_layers,
                d_state=d_state, d_conv=d_conv, expand=expand)
    if seed is None:
        net = cls(**args, **kw)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = cls(**args, **kw)
    net.config = dict(kind=kind, **args, **kw)
    if isinstance(d_model, tuple):
        net.config["d_model"] = list(d_model)  # JSON-friendly
    if seed is not None:
        net.config["seed"] = seed
    return net
