"""The 1D-conv denoiser shared by all tokens (p-diff style, kernel 7).

An encoder widens one channel of token values to ``channels[-1]`` feature maps, a decoder narrows
them back with skip connections from the encoder. The timestep enters every block as a
per-channel shift; the condition (an RPG prototype, or p-diff's nothing) is projected to one value
per position and added to every block's feature maps, which is how RPG feeds prototypes in.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return emb if dim % 2 == 0 else torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)


class ConvBlock(nn.Module):
    """conv(k) + per-channel timestep shift (+ the condition as feature maps) -> SiLU; shared by
    RPG's token denoiser and p-diff's latent denoiser."""

    def __init__(self, c_in: int, c_out: int, kernel: int, time_dim: int, cond: bool = False):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2)
        self.time = nn.Linear(time_dim, c_out)
        # One learned gain and bias per channel turns the one-channel condition into feature maps.
        self.cond = nn.Conv1d(1, c_out, 1) if cond else None
        self.act = nn.SiLU()

    def forward(self, x: Tensor, temb: Tensor, cond: Tensor | None = None) -> Tensor:
        h = self.conv(x) + self.time(temb)[:, :, None]
        if self.cond is not None and cond is not None:
            h = h + self.cond(cond)
        return self.act(h)


class Denoiser1D(nn.Module):
    """Predicts the noise (or the clean token) of a batch of noisy tokens [B, T]."""

    def __init__(self, token_size: int, channels: Sequence[int] = (1, 32, 64, 128),
                 kernel_size: int = 7, cond_dim: int | None = None, time_dim: int = 128):
        super().__init__()
        channels = list(channels)
        if channels[0] != 1 or len(channels) < 2:
            raise ValueError(f"denoiser channels must start at 1 and widen, got {channels}")
        self.token_size = token_size
        self.time_dim = time_dim
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, time_dim), nn.SiLU(),
                                      nn.Linear(time_dim, time_dim))
        has_cond = cond_dim is not None
        # A prototype of another width than the token is mapped onto token positions first.
        self.cond_proj = (nn.Linear(cond_dim, token_size)
                          if has_cond and cond_dim != token_size else nn.Identity())
        self.encoder = nn.ModuleList(
            ConvBlock(a, b, kernel_size, time_dim, has_cond)
            for a, b in zip(channels, channels[1:]))
        rev = channels[::-1]
        # Decoder block i > 0 sees its input plus the matching encoder output (skip).
        dec = []
        for i in range(len(rev) - 2):
            c_in = rev[i] if i == 0 else rev[i] * 2
            dec.append(ConvBlock(c_in, rev[i + 1], kernel_size, time_dim, has_cond))
        self.decoder = nn.ModuleList(dec)
        # With one level there is no decoder block and no skip to concatenate.
        self.out = nn.Conv1d(rev[-2] * (2 if dec else 1), 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        temb = self.time_mlp(timestep_embedding(t, self.time_dim))
        c = self.cond_proj(cond).unsqueeze(1) if cond is not None else None
        h = x.unsqueeze(1)
        skips = []
        for block in self.encoder:
            h = block(h, temb, c)
            skips.append(h)
        skips.pop()  # the deepest output is the decoder's input itself
        for block in self.decoder:
            h = block(h, temb, c)
            h = torch.cat([h, skips.pop()], dim=1)
        return self.out(h).squeeze(1)
