"""The DDPM noise schedule: linear betas, and the quantities every sampler and loss reads."""

from __future__ import annotations

import torch
from torch import Tensor


class NoiseSchedule:
    """Linear betas from ``beta_start`` to ``beta_end`` over ``num_steps`` (RPG: 1e-4, 2e-2,
    1000)."""

    def __init__(self, num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 2e-2):
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        if not 0 < beta_start <= beta_end < 1:
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
        self.num_steps = num_steps
        self.beta_start, self.beta_end = beta_start, beta_end
        self.betas = torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
        self.alphas = 1.0 - self.betas
        self.alpha_bars = torch.cumprod(self.alphas, dim=0)

    @classmethod
    def of(cls, config) -> "NoiseSchedule":
        """The schedule a generator config names (num_train_timesteps, beta_start, beta_end)."""
        return cls(config.num_train_timesteps, config.beta_start, config.beta_end)

    def config(self) -> dict:
        return {"num_steps": self.num_steps, "beta_start": self.beta_start,
                "beta_end": self.beta_end}

    def _at(self, values: Tensor, t: Tensor, like: Tensor) -> Tensor:
        out = values.to(like.device)[t].to(like.dtype)
        return out.view(-1, *([1] * (like.dim() - 1)))

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """q(x_t | x_0): sqrt(a_bar) x0 + sqrt(1 - a_bar) eps."""
        ab = self._at(self.alpha_bars, t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def to_x0_eps(self, model_out: Tensor, x_t: Tensor, t: Tensor,
                  prediction: str) -> tuple[Tensor, Tensor]:
        """Both views of a network output, whichever it predicts."""
        ab = self._at(self.alpha_bars, t, x_t)
        if prediction == "epsilon":
            eps = model_out
            x0 = (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()
        elif prediction == "sample":
            x0 = model_out
            eps = (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()
        else:
            raise ValueError(f"prediction must be 'epsilon' or 'sample', got {prediction!r}")
        return x0, eps
