"""Samplers: turn noise into clean tokens with a trained denoiser.

``ddpm`` walks all training timesteps with the posterior q(x_{t-1} | x_t, x_0); ``ddim`` takes
``steps`` evenly spaced timesteps deterministically (eta = 0), which is what makes large models
affordable to sample. Both accept a denoiser that predicts either the noise or the clean sample.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from paramgen.diffusion.schedule import NoiseSchedule

SAMPLERS = ("ddpm", "ddim")
# DDIM steps when a sampler of that kind is asked for without a step count (every method).
DEFAULT_DDIM_STEPS = 60
ModelFn = Callable[[Tensor, Tensor], Tensor]


def sampling_plan(config, sampler: str | None = None,
                  steps: int | None = None) -> tuple[str, int | None]:
    """The sampler and step count a call asks for, falling back on a generator config's
    ``sampler`` / ``sampling_steps`` (DDIM without a count takes ``DEFAULT_DDIM_STEPS``)."""
    sampler = sampler or config.sampler
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if steps is None:
        steps = config.sampling_steps if sampler == config.sampler else None
    if sampler == "ddim" and steps is None:
        steps = DEFAULT_DDIM_STEPS
    return sampler, steps


def _timesteps(schedule: NoiseSchedule, steps: int | None) -> list[int]:
    total = schedule.num_steps
    steps = total if steps is None else int(steps)
    if not 1 <= steps <= total:
        raise ValueError(f"sampling steps must be between 1 and {total}, got {steps}")
    # Evenly spaced, always ending at t = 0 so the last step lands on the clean sample.
    ts = torch.linspace(total - 1, 0, steps).round().long().tolist()
    return sorted(set(ts), reverse=True)


@torch.no_grad()
def sample(model_fn: ModelFn, noise: Tensor, schedule: NoiseSchedule, sampler: str = "ddpm",
           steps: int | None = None, prediction: str = "epsilon",
           generator: torch.Generator | None = None, clip: float | None = None) -> Tensor:
    """Denoise ``noise`` (x_T) into x_0. ``model_fn(x_t, t)`` gets t as a LongTensor [B]."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if sampler == "ddpm" and steps is not None and steps != schedule.num_steps:
        raise ValueError(f"the ddpm sampler walks all {schedule.num_steps} timesteps; "
                         f"use sampler='ddim' for {steps} steps")
    x = noise
    ab_all = schedule.alpha_bars.to(x.device)
    ts = _timesteps(schedule, steps)
    for i, t in enumerate(ts):
        t_batch = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        out = model_fn(x, t_batch).to(x.dtype)
        x0, eps = schedule.to_x0_eps(out, x, t_batch, prediction)
        if clip is not None:
            x0 = x0.clamp(-clip, clip)
            eps = schedule.to_x0_eps(x0, x, t_batch, "sample")[1]
        ab_t = ab_all[t].to(x.dtype)
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        ab_prev = ab_all[t_prev].to(x.dtype) if t_prev >= 0 else torch.ones((), dtype=x.dtype,
                                                                              device=x.device)
        if sampler == "ddim":
            x = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
            continue
        # DDPM posterior mean and variance for the step t -> t - 1.
        beta_t = 1 - ab_t / ab_prev
        mean = (ab_prev.sqrt() * beta_t / (1 - ab_t)) * x0 + \
               ((1 - beta_t).sqrt() * (1 - ab_prev) / (1 - ab_t)) * x
        if t_prev >= 0:
            var = beta_t * (1 - ab_prev) / (1 - ab_t)
            z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = mean + var.sqrt() * z
        else:
            x = mean
    return x
