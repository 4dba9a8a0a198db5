"""Every setting of a p-diff generator; presets (``presets.PDIFF_PRESETS``) are named sets of them.
The defaults are the ``cpu`` preset's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from paramgen.config import SharedSettings, sampling, setting, training
from paramgen.methods.pdiff.presets import PDIFF_PRESETS

NORMS = ("instance", "none")
LR_SCHEDULES = ("cosine", "constant")


@dataclass
class PDiffConfig(SharedSettings):
    """p-diff's settings: model (autoencoder, latent denoiser), training, sampling, runtime.

    ``keys`` (shared with every generator) picks what is generated: None = every floating
    tensor; key prefixes / globs, or "last-norm-K" (p-diff's partial setting)."""

    NAME: ClassVar[str] = "p-diff"
    PRESETS: ClassVar[dict[str, dict]] = PDIFF_PRESETS

    # parameter autoencoder
    fold_rate: int = setting(4)                     # each encoder level downsamples by this
    ae_kernel_size: int = setting(5)
    enc_channels: tuple[int, ...] = setting((8, 8, 8, 8))    # per level, shallow -> deep
    dec_channels: tuple[int, ...] = setting((8, 32, 32, 8))  # per level, deep -> shallow
    latent_dim: int = setting(64)
    norm: str = setting("instance")                 # instance | none
    input_noise: float = setting(1e-3)              # sigma_v
    latent_noise: float = setting(1e-1)             # sigma_z
    # The collapse fix (docs/pdiff.md): standardise every parameter coordinate across the
    # collection, and read sigma_z relative to the latents' spread. Both off is p-diff as printed.
    standardize_coordinates: bool = setting(True)
    relative_latent_noise: bool = setting(True)
    # latent diffusion
    denoiser_channels: tuple[int, ...] = setting((1, 32, 64))
    denoiser_kernel_size: int = setting(3)
    denoiser_fc_channels: int = setting(4)
    denoiser_fc_hidden: int = setting(256)
    num_train_timesteps: int = setting(1000)
    beta_start: float = setting(1e-4)
    beta_end: float = setting(2e-2)
    # sampling
    sampler: str = sampling("ddpm")                 # ddpm | ddim | dpm++
    sampling_steps: int | None = sampling(None)     # None: all timesteps (ddpm), 60 (ddim)
    sample_batch: int = sampling(16)                # models decoded at once (bounds memory)
    # training: the autoencoder first, then the DDPM on its frozen latents
    ae_steps: int = training(400)
    ae_lr: float = training(3e-3)
    ae_weight_decay: float = training(2e-6)
    ae_batch_size: int = training(50)
    ddpm_steps: int = training(1000)
    ddpm_lr: float = training(3e-3)
    ddpm_weight_decay: float = training(2e-6)
    ddpm_batch_size: int = training(50)
    lr_schedule: str = training("cosine")           # cosine (to lr * min_lr_ratio) | constant
    min_lr_ratio: float = training(0.01)
    grad_clip: float = training(0.0)                # 0 disables clipping

    def __post_init__(self) -> None:
        self._check_shared()
        for name in ("enc_channels", "dec_channels"):
            self._check_channels(name, first_one=False)
        self._check_channels("denoiser_channels")
        self._check_choices({"norm": NORMS, "lr_schedule": LR_SCHEDULES,
                             "sampler": ("ddpm", "ddim", "dpm++")})
        self._check_positive("fold_rate", "ae_kernel_size", "latent_dim", "denoiser_kernel_size",
                             "denoiser_fc_channels", "denoiser_fc_hidden", "num_train_timesteps",
                             "ae_batch_size", "ddpm_batch_size", "sample_batch", "ae_steps",
                             "ddpm_steps")
        if self.sampling_steps is not None:
            self._check_positive("sampling_steps")
        if self.fold_rate < 2:
            raise ValueError(f"PDiffConfig.fold_rate must be >= 2 (it is the downsampling "
                             f"factor of each encoder level), got {self.fold_rate}")
        if len(self.enc_channels) != len(self.dec_channels):
            raise ValueError("PDiffConfig.enc_channels and dec_channels must be of equal length "
                             f"(one per level), got {self.enc_channels} and {self.dec_channels}")
        self._check_finite("input_noise", "latent_noise", "ae_lr", "ddpm_lr", "ae_weight_decay",
                           "ddpm_weight_decay", "grad_clip", low=0.0)
        self._check_finite("min_lr_ratio", low=0.0, high=1.0)
        self._check_finite("beta_start", "beta_end", low=0.0, high=1.0)
