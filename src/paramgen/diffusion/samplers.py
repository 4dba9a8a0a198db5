"""Samplers: turn noise into clean tokens with a trained denoiser.

``ddpm`` walks all training timesteps with the posterior q(x_{t-1} | x_t, x_0); ``ddim`` takes
``steps`` evenly spaced timesteps deterministically (eta = 0); ``dpm++`` is DPM-Solver++(2M)
(Lu et al. 2022, "DPM-Solver++", Algorithm 2): a deterministic second-order multistep solver of
the diffusion ODE in log-SNR time, which reaches in a few steps what DDIM needs many for. All
accept a denoiser that predicts either the noise or the clean sample.

``dpm++`` is written here rather than taken from ``diffusers``' DPMSolverMultistepScheduler:
both give the same samples (``benchmarks/sampling.py compare-diffusers`` measures the gap), but
the scheduler object is built per call and RPG calls the sampler once per block of tokens (once
per token in sequential mode), and ``diffusers`` would be a large dependency for twenty lines;
docs/performance.md has the measurements.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable

import torch
from torch import Tensor

from paramgen.diffusion.schedule import NoiseSchedule

SAMPLERS = ("ddpm", "ddim", "dpm++")
# The one place sampling defaults live: steps when a sampler of that kind is asked for without
# a step count (every method). docs/performance.md has the quality-vs-steps measurements.
DEFAULT_DDIM_STEPS = 60
DEFAULT_DPM_STEPS = 10
DEFAULT_STEPS = {"ddim": DEFAULT_DDIM_STEPS, "dpm++": DEFAULT_DPM_STEPS}
ModelFn = Callable[[Tensor, Tensor], Tensor]


def sampling_plan(config, sampler: str | None = None,
                  steps: int | None = None) -> tuple[str, int | None]:
    """The sampler and step count a call asks for, falling back on a generator config's
    ``sampler`` / ``sampling_steps`` (a few-step sampler without a count takes its
    ``DEFAULT_STEPS``; ddpm always walks every timestep: None)."""
    sampler = sampler or config.sampler
    _check_sampler(sampler)
    if steps is None:
        steps = config.sampling_steps if sampler == config.sampler else None
    if steps is None:
        steps = DEFAULT_STEPS.get(sampler)
    return sampler, steps


def _check_sampler(sampler: str) -> None:
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")


def _check_steps(schedule: NoiseSchedule, steps: int | None) -> int:
    total = schedule.num_steps
    given = total if steps is None else steps
    try:
        steps = operator.index(given)          # ints (numpy's too), never floats or bools
    except TypeError:
        steps = None
    if steps is None or isinstance(given, bool) or not 1 <= steps <= total:
        raise ValueError(f"sampling steps must be an integer between 1 and {total}, "
                         f"got {given!r}")
    return steps


def _timesteps(schedule: NoiseSchedule, steps: int | None) -> list[int]:
    total = schedule.num_steps
    steps = _check_steps(schedule, steps)
    # Evenly spaced, always ending at t = 0 so the last step lands on the clean sample.
    ts = torch.linspace(total - 1, 0, steps).round().long().tolist()
    return sorted(set(ts), reverse=True)


def solver_timesteps(schedule: NoiseSchedule, steps: int) -> list[int]:
    """The timesteps ``dpm++`` evaluates the denoiser at: evenly spaced in log-SNR from T-1 down
    to 0, each the nearest training timestep (at most ``steps`` of them, distinct).

    Why log-SNR and not evenly spaced t as DDIM: with linear betas the signal-to-noise ratio
    changes fastest near t = 0, where an evenly spaced grid leaves one long, curved last step;
    on Gaussian data, where the exact ODE solution is known, the log-SNR grid's error at 10
    steps is 1/100 of the t grid's (tests/test_samplers.py).
    """
    total = schedule.num_steps
    steps = _check_steps(schedule, steps)
    if steps == 1:
        return [total - 1]
    ab = schedule.alpha_bars
    lam = 0.5 * (ab.log() - (1 - ab).log())                 # log(alpha / sigma), increasing in -t
    targets = torch.linspace(float(lam[-1]), float(lam[0]), steps, dtype=torch.float64)
    ts = (lam.view(1, -1) - targets.view(-1, 1)).abs().argmin(dim=1).tolist()
    return sorted(set(ts), reverse=True)


@torch.no_grad()
def sample(model_fn: ModelFn, noise: Tensor, schedule: NoiseSchedule, sampler: str = "ddpm",
           steps: int | None = None, prediction: str = "epsilon",
           generator: torch.Generator | None = None, clip: float | None = None) -> Tensor:
    """Denoise ``noise`` (x_T) into x_0. ``model_fn(x_t, t)`` gets t as a LongTensor [B].

    ``steps`` is the number of denoiser calls (ddim, dpm++); ddpm takes all timesteps.
    """
    _check_sampler(sampler)
    if sampler == "ddpm" and steps is not None and steps != schedule.num_steps:
        raise ValueError(f"the ddpm sampler walks all {schedule.num_steps} timesteps; "
                         f"use sampler='ddim' or 'dpm++' for {steps} steps")
    if sampler == "dpm++":
        if steps is None:
            raise ValueError("sampler='dpm++' needs a step count (steps=...)")
        return _dpm_solver_2m(model_fn, noise, schedule, steps, prediction, clip)
    x = noise
    ab_all = schedule.alpha_bars.to(x.device)
    ts = _timesteps(schedule, steps)
    for i, t in enumerate(ts):
        x0, eps = _predict(model_fn, x, t, schedule, prediction, clip)
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


def _predict(model_fn: ModelFn, x: Tensor, t: int, schedule: NoiseSchedule, prediction: str,
             clip: float | None) -> tuple[Tensor, Tensor]:
    """The denoiser's clean-sample and noise estimates at timestep ``t`` (x0 clipped if asked)."""
    t_batch = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
    out = model_fn(x, t_batch).to(x.dtype)
    x0, eps = schedule.to_x0_eps(out, x, t_batch, prediction)
    if clip is not None:
        x0 = x0.clamp(-clip, clip)
        eps = schedule.to_x0_eps(x0, x, t_batch, "sample")[1]
    return x0, eps


def _dpm_solver_2m(model_fn: ModelFn, noise: Tensor, schedule: NoiseSchedule, steps: int,
                   prediction: str, clip: float | None) -> Tensor:
    """DPM-Solver++(2M) with the data (x0) parameterisation, first order on the first step; the
    last call (at t = 0) gives the clean sample directly, as DDIM's does.

    In log-SNR time lambda = log(alpha / sigma), with step h = lambda_next - lambda_now:
        x_next = (sigma_next / sigma_now) x - alpha_next (exp(-h) - 1) D,
        D = x0_now + (x0_now - x0_prev) / (2 r),  r = h_prev / h   (D = x0_now on first order).
    """
    ab = schedule.alpha_bars
    ts = solver_timesteps(schedule, steps)
    alpha = [float(ab[t].sqrt()) for t in ts] + [1.0]
    sigma = [float((1 - ab[t]).sqrt()) for t in ts] + [0.0]
    lam = [math.log(a / s) for a, s in zip(alpha[:-1], sigma[:-1])]
    x = noise
    x0_prev = None
    for i, t in enumerate(ts):
        x0, _ = _predict(model_fn, x, t, schedule, prediction, clip)
        if i + 1 == len(ts):           # from t = 0 to the clean sample: first order, x = x0
            return x0
        h = lam[i + 1] - lam[i]
        d = x0
        if x0_prev is not None:
            r = (lam[i] - lam[i - 1]) / h
            d = x0 + (x0 - x0_prev) / (2 * r)
        x = (sigma[i + 1] / sigma[i]) * x - alpha[i + 1] * math.expm1(-h) * d
        x0_prev = x0
    return x  # not reached: the loop returns on its last step
