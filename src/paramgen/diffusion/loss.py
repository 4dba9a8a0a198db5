"""The diffusion training loss, with padding masked out."""

from __future__ import annotations

import torch
from torch import Tensor

from paramgen.diffusion.schedule import NoiseSchedule


def diffusion_loss(model_fn, x0: Tensor, mask: Tensor, schedule: NoiseSchedule,
                   prediction: str = "epsilon", generator: torch.Generator | None = None) -> Tensor:
    """Mean squared error of the denoiser's target over the real (unpadded) values of ``x0``.

    ``model_fn(x_t, t)`` predicts the noise (``epsilon``) or the clean tokens (``sample``).
    """
    b = x0.shape[0]
    t = torch.randint(0, schedule.num_steps, (b,), generator=generator, device=x0.device)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    x_t = schedule.add_noise(x0, noise, t)
    out = model_fn(x_t, t)
    target = noise if prediction == "epsilon" else x0
    mask = mask.to(out.dtype)
    err = (out.float() - target.float()) ** 2 * mask
    return err.sum() / mask.sum().clamp_min(1.0)
