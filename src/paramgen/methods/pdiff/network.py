"""p-diff's networks: the parameter autoencoder and the network saved as a whole (autoencoder,
latent denoiser, latent standardisation). The latent denoiser lives in :mod:`paramgen.diffusion`."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from paramgen.diffusion import LatentDenoiser
from paramgen.methods.pdiff.config import PDiffConfig

# The deepest feature map of the autoencoder is at least this long: the FC bottleneck reads it,
# and every InstanceNorm then normalises at least fold_rate * 4 positions, so removing each
# channel's mean and scale never throws away most of what a short map holds.
_MIN_DEEP_LENGTH = 4


def _norm(kind: str, channels: int) -> nn.Module:
    # affine=False as in p-diff: the following conv already learns a per-channel scale and shift.
    return nn.InstanceNorm1d(channels) if kind == "instance" else nn.Identity()


class ParameterAutoencoder(nn.Module):
    """p-diff's parameter autoencoder: 1D convs with a fully connected bottleneck.

    The input vector of ``in_dim`` values is zero-padded to ``padded_dim``, a multiple of
    ``fold_rate ** levels``. Encoder level i: conv(k) -> norm -> LeakyReLU -> strided conv (kernel
    = stride = fold_rate, the downsampling) -> LeakyReLU; then flatten -> linear -> tanh gives the
    latent. tanh bounds the latent, which is what gives sigma_z = 0.1 a fixed meaning: an
    unbounded encoder could scale its latents up until the noise no longer mattered. The decoder
    mirrors it: linear -> per level transposed conv (upsampling by fold_rate) -> norm -> LeakyReLU
    -> conv(k) -> norm -> LeakyReLU; a last conv maps to one channel, cropped to ``in_dim``.
    """

    def __init__(self, in_dim: int, latent_dim: int, enc_channels: Sequence[int],
                 dec_channels: Sequence[int], fold_rate: int = 4, kernel_size: int = 5,
                 norm: str = "instance"):
        super().__init__()
        if in_dim < 1:
            raise ValueError(f"the autoencoder needs at least one input value, got {in_dim}")
        self.in_dim = int(in_dim)
        self.latent_dim = int(latent_dim)
        self.fold_rate = int(fold_rate)
        levels = len(enc_channels)
        scale = self.fold_rate ** levels
        self.deep_length = max(math.ceil(self.in_dim / scale), _MIN_DEEP_LENGTH)
        self.padded_dim = self.deep_length * scale
        pad = kernel_size // 2
        act = lambda: nn.LeakyReLU(0.2)  # noqa: E731  (a fresh module per use keeps printing clear)

        enc: list[nn.Module] = []
        c_prev = 1
        for c in enc_channels:
            enc += [nn.Conv1d(c_prev, c, kernel_size, padding=pad), _norm(norm, c), act(),
                    nn.Conv1d(c, c, self.fold_rate, stride=self.fold_rate), act()]
            c_prev = c
        self.encoder = nn.Sequential(*enc)
        self.to_latent = nn.Linear(enc_channels[-1] * self.deep_length, self.latent_dim)

        self.dec_in_channels = int(dec_channels[0])
        self.from_latent = nn.Linear(self.latent_dim, self.dec_in_channels * self.deep_length)
        dec: list[nn.Module] = []
        c_prev = self.dec_in_channels
        for c in dec_channels:
            dec += [nn.ConvTranspose1d(c_prev, c, self.fold_rate, stride=self.fold_rate),
                    _norm(norm, c), act(),
                    nn.Conv1d(c, c, kernel_size, padding=pad), _norm(norm, c), act()]
            c_prev = c
        self.decoder = nn.Sequential(*dec)
        self.out = nn.Conv1d(c_prev, 1, kernel_size, padding=pad)

    def encode(self, v: Tensor) -> Tensor:
        """[B, in_dim] -> latent [B, latent_dim] in (-1, 1)."""
        x = nn.functional.pad(v, (0, self.padded_dim - self.in_dim)).unsqueeze(1)
        h = self.encoder(x).flatten(1)
        return torch.tanh(self.to_latent(h))

    def decode(self, z: Tensor) -> Tensor:
        """latent [B, latent_dim] -> [B, in_dim]."""
        h = self.from_latent(z).view(z.shape[0], self.dec_in_channels, self.deep_length)
        return self.out(self.decoder(h))[:, 0, :self.in_dim]

    def forward(self, v: Tensor, input_noise: float = 0.0, latent_noise: float = 0.0,
                generator: torch.Generator | None = None, relative: bool = False) -> Tensor:
        """Reconstruction of ``v`` with p-diff's noise augmentation (eq. 5)."""
        if input_noise > 0:
            v = v + input_noise * torch.randn(v.shape, generator=generator, device=v.device,
                                              dtype=v.dtype)
        z = self.encode(v)
        if latent_noise > 0:
            if relative and z.shape[0] > 1:
                # sigma_z in units of the latents' own spread: a fixed 0.1 drowns latents that
                # spread 1e-4, and the decoder then learns to ignore them (docs/pdiff.md)
                latent_noise = latent_noise * z.detach().std(0, keepdim=True)
            z = z + latent_noise * torch.randn(z.shape, generator=generator, device=z.device,
                                               dtype=z.dtype)
        return self.decode(z)


class PDiffNetwork(nn.Module):
    """The autoencoder, the latent denoiser and the latent standardisation, saved together."""

    def __init__(self, config: PDiffConfig, in_dim: int):
        super().__init__()
        self.autoencoder = ParameterAutoencoder(
            in_dim, config.latent_dim, config.enc_channels, config.dec_channels, config.fold_rate,
            config.ae_kernel_size, config.norm)
        self.denoiser = LatentDenoiser(
            config.latent_dim, config.denoiser_channels, config.denoiser_kernel_size,
            config.denoiser_fc_channels, config.denoiser_fc_hidden)
        # The DDPM works on (z - mean) / std: unit-scale data, whatever spread the encoder gives
        # the training latents. Buffers, so they travel with the weights.
        self.register_buffer("latent_mean", torch.zeros(config.latent_dim))
        self.register_buffer("latent_std", torch.ones(()))
        # Per-coordinate standardisation of the parameter vectors (config
        # standardize_coordinates): the autoencoder sees how checkpoints differ, not the ~0.1% of
        # their values by which they do.
        self.register_buffer("coord_mean", torch.zeros(in_dim))
        self.register_buffer("coord_std", torch.ones(in_dim))
