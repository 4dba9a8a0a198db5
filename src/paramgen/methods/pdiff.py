"""p-diff: neural network diffusion (Wang et al., 2024), the method RPG is measured against.

Two stages, trained one after the other:

1. **Parameter autoencoder.** The generated parameters of a checkpoint are normalised per tensor
   (the shared :class:`~paramgen.tokenize.Tokenizer`) and flattened into one vector ``v`` of ``d``
   values. A 1D-conv encoder (InstanceNorm + LeakyReLU, each level downsampling by ``fold_rate``)
   and one fully connected layer map it to a latent ``z``; a mirrored decoder maps ``z`` back.
   Training adds Gaussian noise to the input (``sigma_v = 0.001``) and to the latent
   (``sigma_z = 0.1``), p-diff's augmentation that makes the decoder robust to latents it has
   not seen, and minimises the L2 reconstruction error.
2. **Latent DDPM.** The clean latents of the training checkpoints are standardised and a small
   1D-conv denoiser with a fully connected bottleneck learns them (epsilon prediction, linear betas
   1e-4..2e-2, T = 1000).

Sampling: noise -> DDPM (all 1000 steps) or DDIM (k steps) -> latent -> decoder -> parameters.

**Partial generation** (p-diff's default): ``keys`` picks the tensors to generate (key prefixes,
glob patterns, or ``"last-norm-K"`` for the last K normalization layers); every other tensor is
copied from a reference checkpoint, stored with the generator. ``keys=None`` generates everything.

p-diff is unconditional: ``sample(condition=...)`` raises ``ValueError``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import math
import os
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from paramgen import io
from paramgen.diffusion import NoiseSchedule, diffusion_loss, timestep_embedding
from paramgen.diffusion import sample as run_sampler
from paramgen.methods.base import (FORMAT, FORMAT_VERSION, Generator, read_config,
                                   resolve_config)
from paramgen.methods.pdiff_presets import PDIFF_PRESETS
from paramgen.tokenize import Tokenizer, is_generated

__all__ = ["LatentDenoiser", "PDiff", "PDiffConfig", "PDiffNetwork", "ParameterAutoencoder",
           "last_norm_keys", "resolve_keys", "split_steps"]

NORMS = ("instance", "none")
LR_SCHEDULES = ("cosine", "constant")
# The deepest feature map of the autoencoder is at least this long: the FC bottleneck reads it,
# and every InstanceNorm then normalises at least fold_rate * 4 positions, so removing each
# channel's mean and scale never throws away most of what a short map holds.
_MIN_DEEP_LENGTH = 4
_LAST_NORM = re.compile(r"last-norm-(\d+)")
_NORM_NAME = re.compile(r"(norm|bn|ln|gn)", re.IGNORECASE)


# ----------------------------------------------------------------------------- configuration

@dataclass
class PDiffConfig:
    """Every setting of a p-diff generator. Presets (``PDIFF_PRESETS``) are named sets of these;
    the defaults are the ``cpu`` preset's."""

    # what to generate: None = every floating tensor; a list of key prefixes / glob patterns, or
    # the string "last-norm-K" (the last K normalization layers: p-diff's partial setting)
    keys: list[str] | str | None = None
    reference: int = 0                      # checkpoint that supplies the tensors not generated
    # parameter autoencoder
    fold_rate: int = 4                      # each encoder level downsamples by this factor
    ae_kernel_size: int = 5
    enc_channels: tuple[int, ...] = (8, 8, 8, 8)     # per level, shallow -> deep
    dec_channels: tuple[int, ...] = (8, 32, 32, 8)   # per level, deep -> shallow
    latent_dim: int = 64
    norm: str = "instance"                  # instance | none
    input_noise: float = 1e-3               # sigma_v
    latent_noise: float = 1e-1              # sigma_z
    # latent diffusion
    denoiser_channels: tuple[int, ...] = (1, 32, 64)
    denoiser_kernel_size: int = 3
    denoiser_fc_channels: int = 4
    denoiser_fc_hidden: int = 256
    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 2e-2
    sampler: str = "ddpm"                   # ddpm | ddim
    sampling_steps: int | None = None       # None: all timesteps (ddpm)
    # training: the autoencoder first, then the DDPM on its frozen latents
    ae_steps: int = 1000
    ae_lr: float = 3e-3
    ae_weight_decay: float = 2e-6
    ae_batch_size: int = 50
    ddpm_steps: int = 2000
    ddpm_lr: float = 3e-3
    ddpm_weight_decay: float = 2e-6
    ddpm_batch_size: int = 50
    lr_schedule: str = "cosine"             # cosine (to lr * min_lr_ratio) | constant
    min_lr_ratio: float = 0.01
    grad_clip: float = 0.0                  # 0 disables clipping
    save_every: int = 500
    sample_batch: int = 16                  # models decoded at once (bounds sampling memory)
    device: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.keys, (list, tuple)):
            self.keys = [str(k) for k in self.keys]
        elif self.keys is not None and not isinstance(self.keys, str):
            raise ValueError(f"PDiffConfig.keys must be None, a string or a list of key patterns, "
                             f"got {self.keys!r}")
        self.enc_channels = tuple(int(c) for c in self.enc_channels)
        self.dec_channels = tuple(int(c) for c in self.dec_channels)
        self.denoiser_channels = tuple(int(c) for c in self.denoiser_channels)
        for name, allowed in (("norm", NORMS), ("lr_schedule", LR_SCHEDULES),
                              ("sampler", ("ddpm", "ddim"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"PDiffConfig.{name} must be one of {allowed}, "
                                 f"got {getattr(self, name)!r}")
        for name in ("fold_rate", "ae_kernel_size", "latent_dim", "denoiser_kernel_size",
                     "denoiser_fc_channels", "denoiser_fc_hidden", "num_train_timesteps",
                     "ae_batch_size", "ddpm_batch_size", "save_every", "sample_batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"PDiffConfig.{name} must be a positive integer, "
                                 f"got {getattr(self, name)!r}")
        for name in ("ae_steps", "ddpm_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"PDiffConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.fold_rate < 2:
            raise ValueError(f"PDiffConfig.fold_rate must be >= 2 (it is the downsampling "
                             f"factor of each encoder level), got {self.fold_rate}")
        if not self.enc_channels or len(self.enc_channels) != len(self.dec_channels):
            raise ValueError("PDiffConfig.enc_channels and dec_channels must be non-empty and "
                             f"of equal length (one per level), got {self.enc_channels} and "
                             f"{self.dec_channels}")
        if self.denoiser_channels[0] != 1 or len(self.denoiser_channels) < 2:
            raise ValueError("PDiffConfig.denoiser_channels must start at 1 and widen, got "
                             f"{self.denoiser_channels}")
        if min(self.enc_channels + self.dec_channels + self.denoiser_channels) < 1:
            raise ValueError("channel counts must be positive")
        if self.input_noise < 0 or self.latent_noise < 0:
            raise ValueError("input_noise and latent_noise must be >= 0")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"PDiffConfig.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.reference < 0:
            raise ValueError(f"PDiffConfig.reference must be >= 0, got {self.reference}")

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "PDiffConfig":
        if name not in PDIFF_PRESETS:
            raise ValueError(f"unknown p-diff preset {name!r}; known: {sorted(PDIFF_PRESETS)}")
        return cls.from_dict({**PDIFF_PRESETS[name], **overrides})

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "PDiffConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown p-diff config keys {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for name in ("enc_channels", "dec_channels", "denoiser_channels"):
            d[name] = list(d[name])
        if isinstance(self.keys, list):
            d["keys"] = list(self.keys)
        return d


def split_steps(steps: int | None, ae_steps: int, ddpm_steps: int) -> tuple[int, int]:
    """How ``fit(steps=...)`` divides its steps: (autoencoder steps, DDPM steps).

    ``None`` keeps the config's ``ae_steps`` and ``ddpm_steps``. A number is split in the same
    proportion, rounded, with at least one step per stage (so ``steps`` must be >= 2).
    """
    if steps is None:
        return int(ae_steps), int(ddpm_steps)
    steps = int(steps)
    if steps < 2:
        raise ValueError(f"p-diff trains two stages (autoencoder, then DDPM): steps must be >= 2, "
                         f"got {steps}")
    ae = round(steps * ae_steps / (ae_steps + ddpm_steps))
    ae = min(max(ae, 1), steps - 1)
    return ae, steps - ae


# ----------------------------------------------------------------------------- key selection

def last_norm_keys(state_dict: Mapping[str, Tensor], k: int = 2) -> list[str]:
    """Keys of the last ``k`` normalization layers of a state dict (weight, bias, running stats).

    Works on the state dict alone, by name and shape: a module (the key up to its last dot) is a
    normalization layer when its ``weight`` is a 1-D float tensor and it also has a matching 1-D
    ``bias``, BatchNorm running statistics, or a norm-like name (norm, bn, ln, gn). Linear and
    conv weights are 2-D or more; PReLU has neither bias nor such a name. "Last" is state-dict
    order, which is module registration order (for the zoo models, forward order).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    modules: dict[str, dict[str, Tensor]] = {}
    for key, value in state_dict.items():
        prefix, _, name = key.rpartition(".")
        modules.setdefault(prefix, {})[name] = value
    norms = []
    for prefix, members in modules.items():
        w = members.get("weight")
        if w is None or not w.is_floating_point() or w.dim() != 1:
            continue
        b = members.get("bias")
        bias_ok = b is not None and b.dim() == 1 and b.shape == w.shape
        stats = "running_mean" in members or "running_var" in members
        named = bool(_NORM_NAME.search(prefix.rpartition(".")[2]))
        if bias_ok or stats or named:
            norms.append(prefix)
    if len(norms) < k:
        raise ValueError(f"asked for the last {k} normalization layers, the state dict has "
                         f"{len(norms)} ({', '.join(norms) or 'none'}); give keys= explicitly")
    chosen = set(norms[-k:])
    return [key for key in state_dict if key.rpartition(".")[0] in chosen]


def _matches(key: str, pattern: str) -> bool:
    # "layer2.bn1" selects "layer2.bn1.weight" but not "layer2.bn10.weight"; globs match whole keys.
    if key == pattern or fnmatch.fnmatchcase(key, pattern):
        return True
    prefix = pattern if pattern.endswith(".") else pattern + "."
    return key.startswith(prefix)


def resolve_keys(state_dict: Mapping[str, Tensor], spec: str | Sequence[str] | None) -> list[str]:
    """The keys ``spec`` selects, in state-dict order.

    ``None`` or ``"all"``: every key. ``"last-norm-K"``: :func:`last_norm_keys`. Otherwise key
    names, module prefixes (``"fc"`` selects ``fc.weight`` and ``fc.bias``) or glob patterns
    (``"*.bn2.*"``), as a list or one comma-separated string. Each pattern must select something.
    """
    if spec is None:
        return list(state_dict)
    if isinstance(spec, str):
        text = spec.strip()
        if text == "all":
            return list(state_dict)
        m = _LAST_NORM.fullmatch(text)
        if m:
            return last_norm_keys(state_dict, int(m.group(1)))
        patterns = [p.strip() for p in text.split(",") if p.strip()]
    else:
        patterns = [str(p) for p in spec]
    if not patterns:
        raise ValueError(f"keys={spec!r} selects nothing")
    chosen: set[str] = set()
    for p in patterns:
        hits = [k for k in state_dict if _matches(k, p)]
        if not hits:
            shown = ", ".join(list(state_dict)[:12]) + (", ..." if len(state_dict) > 12 else "")
            raise ValueError(f"key pattern {p!r} matches no key of the checkpoints; keys: {shown}")
        chosen.update(hits)
    return [k for k in state_dict if k in chosen]


# ----------------------------------------------------------------------------- networks

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
                generator: torch.Generator | None = None) -> Tensor:
        """Reconstruction of ``v`` with p-diff's noise augmentation (eq. 5)."""
        if input_noise > 0:
            v = v + input_noise * torch.randn(v.shape, generator=generator, device=v.device,
                                              dtype=v.dtype)
        z = self.encode(v)
        if latent_noise > 0:
            z = z + latent_noise * torch.randn(z.shape, generator=generator, device=z.device,
                                               dtype=z.dtype)
        return self.decode(z)


class _TimeBlock(nn.Module):
    """conv(k) + per-channel timestep shift -> SiLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int, time_dim: int):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2)
        self.time = nn.Linear(time_dim, c_out)
        self.act = nn.SiLU()

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        return self.act(self.conv(x) + self.time(temb)[:, :, None])


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
        self.encoder = nn.ModuleList(_TimeBlock(a, b, kernel_size, time_dim)
                                     for a, b in zip(channels, channels[1:]))
        deep = channels[-1]
        self.squeeze = nn.Conv1d(deep, fc_channels, 1)
        self.fc1 = nn.Linear(fc_channels * latent_dim, fc_hidden)
        self.fc_time = nn.Linear(time_dim, fc_hidden)
        self.fc2 = nn.Linear(fc_hidden, fc_channels * latent_dim)
        self.expand = nn.Conv1d(fc_channels, deep, 1)
        rev = channels[::-1]
        # Decoder block i sees the previous output concatenated with the matching encoder output.
        self.decoder = nn.ModuleList(_TimeBlock(rev[i] * 2, rev[i + 1], kernel_size, time_dim)
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


# ----------------------------------------------------------------------------- generator

def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _fingerprint(data: Tensor, keys: Sequence[str]) -> str:
    """Identifies the training data a workdir's saved state belongs to."""
    h = hashlib.sha256()
    h.update(str(tuple(data.shape)).encode())
    h.update("\n".join(keys).encode())
    h.update(data[:, :64].contiguous().numpy().tobytes())
    h.update(data.sum(dim=1, dtype=torch.float64).numpy().tobytes())
    return h.hexdigest()[:16]


class PDiff(Generator):
    """p-diff parameter generator. ``PDiff(preset="cpu")`` or ``PDiff(config=PDiffConfig(...))``."""

    method = "pdiff"

    def __init__(self, preset: str | None = None, config: PDiffConfig | dict | None = None,
                 **overrides: Any):
        self.preset = "cpu" if preset is None and config is None else preset
        config = resolve_config(PDiffConfig, preset, config, overrides)
        self.config: PDiffConfig = config
        self.schedule = NoiseSchedule(config.num_train_timesteps, config.beta_start,
                                      config.beta_end)
        self.tokenizer: Tokenizer | None = None
        self.network: PDiffNetwork | None = None
        self.generated_keys: list[str] = []
        self.key_order: list[str] = []
        self.reference: dict[str, Tensor] = {}
        self._condition_dim = None          # p-diff is unconditional
        self.history: list[dict] = []
        self.train_seconds = 0.0

    # ------------------------------------------------------------------ setup
    @property
    def device(self) -> torch.device:
        return _resolve_device(self.config.device)

    def _build(self, tokenizer: Tokenizer, generated_keys: list[str], key_order: list[str],
               reference: dict[str, Tensor]) -> None:
        self.tokenizer = tokenizer
        self.generated_keys = list(generated_keys)
        self.key_order = list(key_order)
        self.reference = reference
        self.network = PDiffNetwork(self.config, tokenizer.num_values)

    def _lr_at(self, step: int, total: int, base: float) -> float:
        if self.config.lr_schedule == "constant" or total <= 1:
            return base
        ratio = self.config.min_lr_ratio
        progress = min(step / (total - 1), 1.0)
        return base * (ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * progress)))

    def _require_fitted(self) -> None:
        if self.network is None or self.tokenizer is None:
            raise RuntimeError("this p-diff generator is not trained: call fit() or "
                               "from_pretrained()")

    # ------------------------------------------------------------------ training
    def fit(self, ckpts, steps: int | None = None, seed: int = 0,
            workdir: str | os.PathLike | None = None, progress: bool = True,
            callback: Callable[[int, float], None] | None = None) -> "PDiff":
        """Train the autoencoder, then the latent DDPM, on a CheckpointSet (or state dicts).

        ``steps`` (default ``ae_steps + ddpm_steps`` of the config) is split between the two
        stages in the config's proportion (:func:`split_steps`). With ``workdir`` the training
        state is saved every ``save_every`` steps and at the end; a later call with the same
        workdir, data, config and split continues from the last save.
        """
        from tqdm.auto import tqdm

        cfg = self.config
        ae_total, ddpm_total = split_steps(steps, cfg.ae_steps, cfg.ddpm_steps)
        total = ae_total + ddpm_total
        n = len(ckpts)
        if n == 0:
            raise ValueError("cannot fit p-diff on an empty checkpoint collection")
        if cfg.reference >= n:
            raise ValueError(f"reference={cfg.reference} but the collection has {n} checkpoints")
        if getattr(ckpts, "conditions", None) is not None:
            warnings.warn("p-diff is unconditional: the checkpoints' conditions are ignored and "
                          "one distribution is learned over all of them", stacklevel=2)
        device = self.device
        torch.manual_seed(seed)

        reference_sd = ckpts[cfg.reference]
        key_order = list(reference_sd)
        generated = resolve_keys(reference_sd, cfg.keys)
        if not any(is_generated(reference_sd[k]) for k in generated):
            raise ValueError(f"keys={cfg.keys!r} selects no floating-point tensor to generate "
                             f"(selected: {generated[:8]})")

        def selected(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
            return {k: sd[k] for k in generated}

        values = sum(reference_sd[k].numel() for k in generated if is_generated(reference_sd[k]))
        # p-diff only uses flatten/unflatten (per-tensor normalisation and its exact inverse). One
        # "flat" token the size of the whole vector is the tokenizer's smallest layout: one row of
        # per-token tables, no padding.
        tokenizer = Tokenizer.fit((selected(sd) for sd in ckpts), token_size=values, mode="flat")
        data = torch.stack([tokenizer.flatten(selected(sd)) for sd in ckpts])      # [N, d]
        reference = {k: v.detach().clone() for k, v in reference_sd.items() if k not in generated}
        self._build(tokenizer, generated, key_order, reference)
        net = self.network.to(device)
        ae, den = net.autoencoder, net.denoiser
        # foreach: one fused update over all tensors; the per-tensor loop costs more than the
        # arithmetic for networks this small.
        opt_ae = torch.optim.AdamW(ae.parameters(), lr=cfg.ae_lr, weight_decay=cfg.ae_weight_decay,
                                   foreach=True)
        opt_dm = torch.optim.AdamW(den.parameters(), lr=cfg.ddpm_lr,
                                   weight_decay=cfg.ddpm_weight_decay, foreach=True)
        gen = torch.Generator().manual_seed(seed)                     # batch selection
        dgen = torch.Generator(device=device).manual_seed(seed + 1)   # noise on the device

        start = 0
        self.history = []
        state_path = Path(workdir) / "train_state.pt" if workdir is not None else None
        fingerprint = _fingerprint(data, generated)
        if state_path is not None and state_path.is_file():
            saved = torch.load(state_path, weights_only=False, map_location="cpu")
            if saved.get("fingerprint") != fingerprint or saved.get("config") != cfg.to_dict():
                raise ValueError(f"{state_path} was saved for other data or another config; "
                                 "use a new workdir or delete that file to start over")
            saved_ae = int(saved["ae_total"])
            if saved_ae != ae_total and int(saved["step"]) > min(saved_ae, ae_total):
                raise ValueError(f"{state_path} was saved by a run with {saved_ae} autoencoder "
                                 f"steps and has passed that stage; this call asks for "
                                 f"{ae_total}: pass the same steps= to resume")
            net.load_state_dict(saved["network"])
            opt_ae.load_state_dict(saved["opt_ae"])
            opt_dm.load_state_dict(saved["opt_ddpm"])
            gen.set_state(saved["rng"])
            dgen.set_state(saved["device_rng"])
            start = min(int(saved["step"]), total)
            self.history = list(saved.get("history", []))

        data_dev = data.to(device)
        ones = torch.ones(1, cfg.latent_dim, device=device)
        bar = tqdm(total=total, initial=start, desc="pdiff fit", disable=not progress,
                   dynamic_ncols=True)
        ema = None
        # The AE is frozen once its stage ends, so the standardised training latents are computed
        # once (not re-encoded every DDPM step). A resumed run re-encodes them from the saved AE,
        # whose save at the end of the AE stage already holds the latent statistics.
        latents = self._latents(data_dev) if start >= ae_total else None
        t0 = time.time()
        for step in range(start, total):
            in_ae = step < ae_total
            if in_ae:
                ae.train()
                for group in opt_ae.param_groups:
                    group["lr"] = self._lr_at(step, ae_total, cfg.ae_lr)
                b = min(cfg.ae_batch_size, n)
                batch = torch.randperm(n, generator=gen)[:b].to(device)
                v = data_dev[batch]
                recon = ae(v, cfg.input_noise, cfg.latent_noise, generator=dgen)
                loss = ((recon - v) ** 2).mean()
                opt, params = opt_ae, ae.parameters()
            else:
                if latents is None:
                    latents = self._fit_latent_stats(data_dev)
                if step == ae_total:
                    ema = None  # the DDPM loss lives on another scale than the AE loss
                den.train()
                for group in opt_dm.param_groups:
                    group["lr"] = self._lr_at(step - ae_total, ddpm_total, cfg.ddpm_lr)
                b = min(cfg.ddpm_batch_size, n)
                batch = torch.randperm(n, generator=gen)[:b].to(device)
                z0 = latents[batch]
                loss = diffusion_loss(den, z0, ones.expand_as(z0), self.schedule, "epsilon",
                                      generator=dgen)
                opt, params = opt_dm, den.parameters()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            value = float(loss.detach())
            ema = value if ema is None else 0.98 * ema + 0.02 * value
            phase = "ae" if in_ae else "ddpm"
            bar.update(1)
            done = step + 1
            if step % 10 == 0 or done == total or done == ae_total:
                bar.set_postfix(stage=phase, loss=f"{ema:.4g}")
                self.history.append({"step": done, "stage": phase, "loss": ema})
            if callback is not None:
                callback(done, ema)
            if done == ae_total and latents is None:
                # Stats are fixed the moment the AE is, so a save right here already holds them.
                latents = self._fit_latent_stats(data_dev)
            if state_path is not None and (done % cfg.save_every == 0 or done == total
                                           or done == ae_total):
                io.save_torch(state_path, {
                    "fingerprint": fingerprint, "config": cfg.to_dict(), "step": done,
                    "ae_total": ae_total, "network": net.state_dict(),
                    "opt_ae": opt_ae.state_dict(), "opt_ddpm": opt_dm.state_dict(),
                    "rng": gen.get_state(), "device_rng": dgen.get_state(),
                    "history": self.history})
        bar.close()
        self.train_seconds = time.time() - t0
        net.eval()
        return self

    @torch.no_grad()
    def _encode(self, v: Tensor) -> Tensor:
        """Clean latents of vectors [N, d], encoded 256 at a time."""
        ae = self.network.autoencoder.eval()
        return torch.cat([ae.encode(v[i:i + 256]) for i in range(0, v.shape[0], 256)])

    @torch.no_grad()
    def _fit_latent_stats(self, data: Tensor) -> Tensor:
        """Standardisation of the clean training latents: per-dimension mean, one global std.
        Returns the standardised training latents.

        One std (not one per dimension) keeps the latent's shape: a dimension the encoder barely
        uses stays small instead of being blown up to unit scale, noise and all.
        """
        net = self.network
        z = self._encode(data)
        mean = z.mean(dim=0)
        std = (z - mean).pow(2).mean().sqrt()
        # A single checkpoint (or identical ones) has no spread: keep unit scale then.
        if not float(std) > 1e-8:
            std = torch.ones((), device=z.device)
        net.latent_mean.copy_(mean)
        net.latent_std.copy_(std)
        return (z - net.latent_mean) / net.latent_std

    @torch.no_grad()
    def _latents(self, v: Tensor) -> Tensor:
        """Standardised clean latents of vectors [N, d]."""
        net = self.network
        return (self._encode(v) - net.latent_mean) / net.latent_std

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample_latents(self, n: int = 1, seed: int = 0, sampler: str | None = None,
                       steps: int | None = None) -> Tensor:
        """``n`` latents [n, latent_dim] from the DDPM, in the autoencoder's latent space."""
        self._require_fitted()
        cfg = self.config
        sampler = sampler or cfg.sampler
        if steps is None:
            steps = cfg.sampling_steps if sampler == cfg.sampler else None
        if sampler == "ddim" and steps is None:
            steps = 100
        device = self.device
        net = self.network.to(device).eval()
        gen = torch.Generator(device=device).manual_seed(seed)
        noise = torch.randn(n, cfg.latent_dim, generator=gen, device=device)
        z = run_sampler(net.denoiser, noise, self.schedule, sampler,
                        steps if sampler == "ddim" else None, "epsilon", generator=gen)
        z = z * net.latent_std + net.latent_mean
        # The encoder's tanh never leaves (-1, 1); neither should a latent given to the decoder.
        return z.clamp(-1.0, 1.0)

    @torch.no_grad()
    def decode(self, z: Tensor, batch: int | None = None,
               progress: bool = False) -> list[dict[str, Tensor]]:
        """Latents [n, latent_dim] -> complete state dicts, decoded ``batch`` models at a time
        (default ``sample_batch``): the decoder's activations, not the latents, bound memory."""
        from tqdm.auto import tqdm

        self._require_fitted()
        device = self.device
        ae = self.network.to(device).autoencoder.eval()
        batch = max(1, int(batch or self.config.sample_batch))
        out = []
        with tqdm(total=z.shape[0], desc="pdiff decode", disable=not progress,
                  dynamic_ncols=True) as bar:
            for i in range(0, z.shape[0], batch):
                vectors = ae.decode(z[i:i + batch].to(device)).float().cpu()
                out += [self._assemble(vec) for vec in vectors]
                bar.update(vectors.shape[0])
        return out

    def _assemble(self, vector: Tensor) -> dict[str, Tensor]:
        """A flat normalised vector -> the full state dict (generated + reference tensors)."""
        part = self.tokenizer.unflatten(vector)
        return {k: part[k] if k in part else self.reference[k].clone() for k in self.key_order}

    @torch.no_grad()
    def sample(self, n: int = 1, condition: Any = None, seed: int = 0,
               sampler: str | None = None, steps: int | None = None, mode: str | None = None,
               progress: bool = False, **options: Any) -> list[dict[str, Tensor]]:
        """Generate ``n`` state dicts with the training keys, shapes and dtypes.

        ``sampler``/``steps``: ddpm (all timesteps) or ddim with ``steps`` steps (default: the
        config's). ``mode`` bounds decoding memory as RPG's modes do: ``sequential`` decodes one
        model at a time, ``partial`` (default) ``sample_batch`` at a time, ``full`` all at once;
        the samples agree across modes up to float rounding. ``condition`` must be None: p-diff is
        unconditional.
        """
        self._require_fitted()
        if options:
            raise TypeError(f"unexpected sample options {sorted(options)}; p-diff takes n, "
                            "condition (None), seed, sampler, steps, mode and progress")
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        modes = {"sequential": 1, "partial": self.config.sample_batch, "full": n, None: None}
        if mode not in modes:
            raise ValueError(f"mode must be one of sequential, partial, full, got {mode!r}")
        self._conditions(condition, n, self.device)
        return self.decode(self.sample_latents(n, seed, sampler, steps), modes[mode], progress)

    @torch.no_grad()
    def reconstruct(self, sds: Sequence[Mapping[str, Tensor]]) -> list[dict[str, Tensor]]:
        """Encode and decode state dicts without noise: how well the autoencoder alone does."""
        self._require_fitted()
        v = torch.stack([self.tokenizer.flatten({k: sd[k] for k in self.generated_keys})
                         for sd in sds]).to(self.device)
        return self.decode(self.network.autoencoder.eval().encode(v))

    # ------------------------------------------------------------------ files
    def save_pretrained(self, path: str | os.PathLike) -> Path:
        self._require_fitted()
        path = Path(path)
        config = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "method": self.method,
            "preset": self.preset, "config": self.config.to_dict(),
            "condition_dim": None, "in_dim": self.tokenizer.num_values,
            "generated_keys": self.generated_keys, "key_order": self.key_order,
            "tokenizer": self.tokenizer.to_config(),
        }
        tensors = {f"network.{k}": v for k, v in self.network.state_dict().items()}
        tensors.update(self.tokenizer.copied_tensors())
        tensors.update({f"reference.{k}": v for k, v in self.reference.items()})
        io.save_safetensors(path / "model.safetensors", tensors)
        io.write_json(path / "config.json", config)
        return path

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> "PDiff":
        path = Path(path)
        config = read_config(path, cls.method)
        weights = path / "model.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} not found beside {path / 'config.json'}")
        tensors = load_file(str(weights))
        gen = cls(config=PDiffConfig.from_dict(config["config"]))
        gen.preset = config.get("preset")
        tokenizer = Tokenizer.from_config(config["tokenizer"], tensors)
        generated = list(config["generated_keys"])
        key_order = list(config["key_order"])
        reference = {}
        for k in key_order:
            if k in generated:
                continue
            name = f"reference.{k}"
            if name not in tensors:
                raise ValueError(f"{weights} lacks the reference tensor {k!r} its config names")
            reference[k] = tensors[name]
        gen._build(tokenizer, generated, key_order, reference)
        net_sd = {k[len("network."):]: v for k, v in tensors.items() if k.startswith("network.")}
        missing, unexpected = gen.network.load_state_dict(net_sd, strict=False)
        if missing or unexpected:
            raise ValueError(f"{weights} does not match its config: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}")
        gen.network.eval()
        return gen
