"""p-diff's latent denoiser: 1D convs around a fully connected bottleneck, for short latents."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from paramgen.diffusion.denoiser import ConvBlock, timestep_embedding


class LatentDenoiser(nn.Module):
    """p-diff's latent noise predictor: 1D-conv encoder/decoder around a fully connected bottleneck.

    The convs see a few neighbouring latent values; the bottleneck (squeeze to ``fc_channels``,
    flatten, two linear layers, expand) sees the whole latent, which a conv-only denoiser with a
    local receptive field would not: it would denoise each stretch of the latent on its own and
    stitch together stretches of different training latents. The timestep shifts every block.
    """

    def __init__(self, latent_dim: int, channels: Sequence[int] = (1, 32, 64), kernel_size: int = 3,
                 fc_channels: int = 4, fc_hidden: int = 256, time_dim: int = 128):
        super().__init__()
        channels = list(channels)
        self.latent_dim = int(latent_dim)
        self.time_dim = int(time_dim)
        self.fc_channels = int(fc_channels)
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, time_dim), nn.SiLU(),
                                      nn.Linear(time_dim, time_dim))
        self.encoder = nn.ModuleList(ConvBlock(a, b, kernel_size, time_dim)
                                     for a, b in zip(channels, channels[1:]))
        deep = channels[-1]
        self.squeeze = nn.Conv1d(deep, fc_channels, 1)
        self.fc1 = nn.Linear(fc_channels * latent_dim, fc_hidden)
        self.fc_time = nn.Linear(time_dim, fc_hidden)
        self.fc2 = nn.Linear(fc_hidden, fc_channels * latent_dim)
        self.expand = nn.Conv1d(fc_channels, deep, 1)
        rev = channels[::-1]
        # Decoder block i sees the previous output concatenated with the matching encoder output.
        self.decoder = nn.ModuleList(ConvBlock(rev[i] * 2, rev[i + 1], kernel_size, time_dim)
                                     for i in range(len(rev) - 2))
        self.out = nn.Conv1d(rev[-2] * 2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        temb = self.time_mlp(timestep_embedding(t, self.time_dim))
        h = x.unsqueeze(1)
        skips = []
        for block in self.encoder:
            h = block(h, temb)
            skips.append(h)
        g = self.squeeze(h).flatten(1)
        g = nn.functional.silu(self.fc1(g) + self.fc_time(temb))
        g = self.fc2(g).view(x.shape[0], self.fc_channels, self.latent_dim)
        h = h + self.expand(g)
        for block in self.decoder:
            h = torch.cat([h, skips.pop()], dim=1)
            h = block(h, temb)
        h = torch.cat([h, skips.pop()], dim=1)
        return self.out(h).squeeze(1)
