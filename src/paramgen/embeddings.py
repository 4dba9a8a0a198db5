"""What the recurrent backbone reads for each token: position, permutation state, condition."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

POSITION_KINDS = ("2d", "1d", "learnable")


def sinusoidal(values: Tensor, dim: int) -> Tensor:
    """Classic sin/cos features of integer positions [L] -> [L, dim]."""
    half = max(dim // 2, 1)
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)
    args = values.double()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)[:, :dim]
    if emb.shape[1] < dim:
        emb = torch.cat([emb, torch.zeros(len(values), dim - emb.shape[1], dtype=emb.dtype)], 1)
    return emb.float()


def sinusoidal_2d(positions: Tensor, dim: int) -> Tensor:
    """Half the features encode the layer index, half the index of the token within its layer."""
    first = dim // 2
    return torch.cat([sinusoidal(positions[:, 0], first),
                      sinusoidal(positions[:, 1], dim - first)], dim=-1)


class PositionEmbedding(nn.Module):
    """Fixed 2D or 1D sinusoidal embedding, or a learnable one initialised as 2D."""

    def __init__(self, positions: Tensor, dim: int, kind: str = "2d"):
        super().__init__()
        if kind not in POSITION_KINDS:
            raise ValueError(f"position embedding must be one of {POSITION_KINDS}, got {kind!r}")
        self.kind = kind
        if kind == "1d":
            table = sinusoidal(torch.arange(len(positions)), dim)
        else:
            table = sinusoidal_2d(positions, dim)
        if kind == "learnable":
            self.table = nn.Parameter(table)
        else:
            self.register_buffer("table", table, persistent=False)

    def forward(self) -> Tensor:
        return self.table


class ConditionEncoder(nn.Module):
    """Maps a task vector of fixed size (task bits, a text embedding) to one model-width vector."""

    def __init__(self, cond_dim: int, dim: int):
        super().__init__()
        self.cond_dim = cond_dim
        self.net = nn.Sequential(nn.Linear(cond_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, cond: Tensor) -> Tensor:
        return self.net(cond)
