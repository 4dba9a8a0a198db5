"""paramgen.diffusion: schedule conversions, the DDPM posterior, DDIM determinism, the loss."""

import math

import pytest
import torch

from paramgen.diffusion import NoiseSchedule, diffusion_loss, sample


def test_schedule_matches_its_definition():
    s = NoiseSchedule(10, 1e-4, 2e-2)
    betas = torch.linspace(1e-4, 2e-2, 10, dtype=torch.float64)
    assert torch.allclose(s.alpha_bars, torch.cumprod(1 - betas, 0))
    x0, noise = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    t = torch.tensor([0, 3, 7, 9])
    ab = s.alpha_bars[t][:, None]
    assert torch.allclose(s.add_noise(x0, noise, t), ab.sqrt() * x0 + (1 - ab).sqrt() * noise)


@pytest.mark.parametrize("prediction", ["epsilon", "sample"])
def test_x0_and_eps_views_are_consistent(prediction):
    s = NoiseSchedule(50)
    x0, eps = torch.randn(5, 8, dtype=torch.float64), torch.randn(5, 8, dtype=torch.float64)
    t = torch.tensor([0, 10, 20, 30, 49])
    xt = s.add_noise(x0, eps, t)
    out = eps if prediction == "epsilon" else x0
    got_x0, got_eps = s.to_x0_eps(out, xt, t, prediction)
    assert torch.allclose(got_x0, x0, atol=1e-9) and torch.allclose(got_eps, eps, atol=1e-9)
    with pytest.raises(ValueError, match="prediction"):
        s.to_x0_eps(out, xt, t, "velocity")


def test_ddpm_step_draws_from_the_closed_form_posterior():
    # Two timesteps. At t=1 the model predicts x0 exactly; at t=0 it returns its input, which makes
    # the last (noise-free) step the identity. So the sampler's output is its one stochastic
    # draw from q(x_0 | x_1, x0) = N(mean, var), with the textbook coefficients below.
    s = NoiseSchedule(2, 0.1, 0.3)
    x0 = torch.tensor([[1.5, -0.5]], dtype=torch.float64)
    x1 = torch.tensor([[0.7, 0.2]], dtype=torch.float64)
    model = lambda x, t: x0.expand_as(x) if int(t[0]) == 1 else x  # noqa: E731
    ab0, ab1 = s.alpha_bars[0], s.alpha_bars[1]
    beta1 = 1 - ab1 / ab0
    mean = ab0.sqrt() * beta1 / (1 - ab1) * x0 + (1 - beta1).sqrt() * (1 - ab0) / (1 - ab1) * x1
    var = beta1 * (1 - ab0) / (1 - ab1)
    out = sample(model, x1.expand(40000, 2).contiguous(), s, "ddpm", None, "sample",
                 generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out.mean(0), mean[0], atol=4 * math.sqrt(float(var) / 40000) + 1e-9)
    assert math.isclose(float(out.var(0).mean()), float(var), rel_tol=0.03)


def test_ddim_is_deterministic_and_exact_for_a_perfect_model():
    s = NoiseSchedule(100)
    x0 = torch.randn(3, 7, dtype=torch.float64)
    model = lambda x, t: x0  # noqa: E731
    noise = torch.randn(3, 7, dtype=torch.float64)
    a = sample(model, noise, s, "ddim", 10, "sample", generator=torch.Generator().manual_seed(0))
    b = sample(model, noise, s, "ddim", 10, "sample", generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b)                       # no randomness in DDIM (eta = 0)
    assert torch.allclose(a, x0, atol=1e-9)        # ends on the model's clean sample
    with pytest.raises(ValueError, match="ddim"):
        sample(model, noise, s, "ddpm", 10)
    with pytest.raises(ValueError, match="between 1 and 100"):
        sample(model, noise, s, "ddim", 0)


def test_loss_ignores_masked_values_and_is_zero_for_a_perfect_model():
    s = NoiseSchedule(100)
    x0 = torch.randn(6, 5)
    mask = torch.ones(6, 5)
    mask[:, 3:] = 0
    perfect = lambda xt, t: x0  # noqa: E731
    assert float(diffusion_loss(perfect, x0, mask, s, "sample")) == 0.0
    # a model wrong only on padding positions is still perfect
    wrong_pad = lambda xt, t: torch.cat([x0[:, :3], x0[:, 3:] + 100], 1)  # noqa: E731
    assert float(diffusion_loss(wrong_pad, x0, mask, s, "sample")) == 0.0
    wrong_real = lambda xt, t: x0 + 1  # noqa: E731
    assert float(diffusion_loss(wrong_real, x0, mask, s, "sample")) == pytest.approx(1.0)


def test_denoiser_of_one_level_and_of_several():
    from paramgen.diffusion import Denoiser1D

    for channels in ((1, 8), (1, 8, 16), (1, 4, 8, 16)):
        net = Denoiser1D(12, channels, kernel_size=3, cond_dim=12)
        out = net(torch.randn(5, 12), torch.tensor([0, 1, 2, 3, 4]), torch.randn(5, 12))
        assert out.shape == (5, 12) and torch.isfinite(out).all()
