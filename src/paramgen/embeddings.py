"""What the recurrent backbone reads for each token: position, permutation state, condition."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

POSITION_KINDS = ("2d", "1d", "learnable")


def sinusoidal(values: Tensor, dim: int) -> Tensor:
    """Classic sin/cos features of integer positions [L] -> [L, dim]."""
    half = max(dim // 2, 1)
    # Built where the positions are: sampling computes rows on the fly on the model's device.
    freqs = torch.exp(-math.log(10000.0)
                      * torch.arange(half, dtype=torch.float64, device=values.device) / half)
    args = values.double()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)[:, :dim]
    if emb.shape[1] < dim:
        emb = torch.cat([emb, emb.new_zeros(len(values), dim - emb.shape[1])], 1)
    return emb.float()


def sinusoidal_2d(positions: Tensor, dim: int) -> Tensor:
    """Half the features encode the layer index, half the index of the token within its layer."""
    first = dim // 2
    return torch.cat([sinusoidal(positions[:, 0], first),
                      sinusoidal(positions[:, 1], dim - first)], dim=-1)


class PositionEmbedding(nn.Module):
    """Fixed 2D or 1D sinusoidal embedding, or a learnable one initialised as 2D.

    The fixed kinds keep only the [L, 2] positions and compute rows when asked: :meth:`rows`
    gives a block of them without building the whole [L, dim] table, so sampling a model of
    millions of tokens block by block never holds it.
    """

    def __init__(self, positions: Tensor, dim: int, kind: str = "2d"):
        super().__init__()
        if kind not in POSITION_KINDS:
            raise ValueError(f"position embedding must be one of {POSITION_KINDS}, got {kind!r}")
        self.kind = kind
        self.dim = dim
        self.register_buffer("positions", positions.long().reshape(-1, 2).clone(),
                             persistent=False)
        self.table = nn.Parameter(sinusoidal_2d(positions, dim)) if kind == "learnable" else None
        self._cache: Tensor | None = None

    def _compute(self, start: int, end: int) -> Tensor:
        if self.kind == "1d":
            return sinusoidal(torch.arange(start, end, device=self.positions.device), self.dim)
        return sinusoidal_2d(self.positions[start:end], self.dim)

    def rows(self, start: int, end: int) -> Tensor:
        """Embeddings of tokens ``start:end`` [end - start, dim]."""
        if self.table is not None:
            return self.table[start:end]
        if self._cache is not None and self._cache.device == self.positions.device:
            return self._cache[start:end]
        return self._compute(start, end)

    def rows_at(self, index: Tensor) -> Tensor:
        """Embeddings of the tokens at ``index`` (any shape of token indices) [..., dim]."""
        flat = index.reshape(-1).to(self.positions.device)
        if self.table is not None:
            out = self.table[flat]
        elif self.kind == "1d":
            out = sinusoidal(flat, self.dim)
        else:
            out = sinusoidal_2d(self.positions[flat], self.dim)
        return out.view(*index.shape, self.dim)

    def forward(self) -> Tensor:
        """The whole table [L, dim] (kept after the first call: training asks every step)."""
        if self.table is not None:
            return self.table
        if self._cache is None or self._cache.device != self.positions.device:
            self._cache = self._compute(0, len(self.positions))
        return self._cache


class ConditionEncoder(nn.Module):
    """Maps a task vector of fixed size (task bits, a text embedding) to one model-width vector."""

    def __init__(self, cond_dim: int, dim: int):
        super().__init__()
        self.cond_dim = cond_dim
        self.net = nn.Sequential(nn.Linear(cond_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, cond: Tensor) -> Tensor:
        return self.net(cond)
