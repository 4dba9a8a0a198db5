"""Named p-diff settings, as data (the p-diff twin of ``methods.rpg.presets.RPG_PRESETS``).

* ``paper``    p-diff Table 5 as printed: AE AdamW lr 2e-5, weight decay 0, 500 iterations,
               batch 50; DDPM AdamW lr 1e-4, weight decay 0, 1000 iterations, batch 50; cosine
               decay for both; sigma_v = 1e-3, sigma_z = 1e-1; linear betas 1e-4..2e-2 over
               T = 1000. The autoencoder shape follows the released code's ``medium`` model (fold
               rate 5, kernel 5, four levels of 4 encoder channels, decoder 4-256-256-8) plus the
               paper's fully connected bottleneck with latent 128 (Table 13's latent for 2,048
               parameters).
* ``official`` the released code's recipe, which differs from the printed table: AE and DDPM both
               AdamW lr 1e-3, weight decay 2e-6, 30,000 AE steps then 30,000 DDPM steps, the whole
               200-checkpoint collection as one batch. Same networks as ``paper``.
* ``cpu``      ours: sized so a cnn-s/digits collection (2,464 parameters, 50 checkpoints) trains
               to parity in a few minutes on 2 CPU cores (docs/pdiff.md says how it was chosen);
               400 + 1000 steps since 1000 + 2000 gave the same samples on two ~10K-parameter
               models at 2.5x the CPU time (docs/pdiff.md, "Fit cost").
* ``cpu-partial`` ``cpu`` generating only the last two normalization layers (p-diff's default
               partial setting); everything else is copied from the reference checkpoint.

A preset is a plain dict of :class:`paramgen.methods.pdiff.config.PDiffConfig` fields; overrides are
merged on top (``PDiff(preset="cpu", latent_dim=32)``).
"""

from __future__ import annotations

# Shared by every preset: the diffusion process of p-diff (and of RPG).
_DIFFUSION = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=2e-2)

# The released code's "medium" autoencoder, with the paper's fully connected bottleneck.
_PAPER_NETWORKS = dict(
    _DIFFUSION, fold_rate=5, ae_kernel_size=5, enc_channels=(4, 4, 4, 4),
    dec_channels=(4, 256, 256, 8), latent_dim=128, norm="instance",
    input_noise=1e-3, latent_noise=1e-1,
    denoiser_channels=(1, 64, 128, 256), denoiser_kernel_size=3, denoiser_fc_channels=4,
    denoiser_fc_hidden=512, sampler="ddpm", sampling_steps=None)

PDIFF_PRESETS: dict[str, dict] = {
    "paper": dict(_PAPER_NETWORKS,
                  ae_steps=500, ae_lr=2e-5, ae_weight_decay=0.0, ae_batch_size=50,
                  ddpm_steps=1000, ddpm_lr=1e-4, ddpm_weight_decay=0.0, ddpm_batch_size=50,
                  lr_schedule="cosine"),
    "official": dict(_PAPER_NETWORKS,
                     ae_steps=30_000, ae_lr=1e-3, ae_weight_decay=2e-6, ae_batch_size=200,
                     ddpm_steps=30_000, ddpm_lr=1e-3, ddpm_weight_decay=2e-6,
                     ddpm_batch_size=200, lr_schedule="constant"),
    "cpu": dict(_DIFFUSION, fold_rate=4, ae_kernel_size=5, enc_channels=(8, 8, 8, 8),
                dec_channels=(8, 32, 32, 8), latent_dim=64, norm="instance",
                input_noise=1e-3, latent_noise=1e-1,
                denoiser_channels=(1, 32, 64), denoiser_kernel_size=3, denoiser_fc_channels=4,
                denoiser_fc_hidden=256, sampler="ddpm", sampling_steps=None,
                ae_steps=400, ae_lr=3e-3, ae_weight_decay=2e-6, ae_batch_size=50,
                ddpm_steps=1000, ddpm_lr=3e-3, ddpm_weight_decay=2e-6, ddpm_batch_size=50,
                lr_schedule="cosine"),
}
PDIFF_PRESETS["cpu-partial"] = dict(PDIFF_PRESETS["cpu"], keys="last-norm-2")
