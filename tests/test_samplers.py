"""DPM-Solver++(2M) (sampler "dpm++"): exactness, determinism, agreement with DDIM, errors."""

from __future__ import annotations

import math

import pytest
import torch

from paramgen.diffusion import NoiseSchedule, sample, sampling_plan
from paramgen.diffusion.samplers import DEFAULT_STEPS, SAMPLERS, solver_timesteps
from paramgen.methods.pdiff import PDiffConfig
from paramgen.methods.rpg import RPGConfig


def _toy_denoiser(prediction: str, schedule: NoiseSchedule, x0_target: torch.Tensor):
    """A smooth, imperfect denoiser: the exact model for data concentrated at ``x0_target``,
    bent by a t-dependent nonlinearity so different solvers give different answers."""
    def model(x, t):
        ab = schedule.alpha_bars[t].to(x.dtype).view(-1, 1)
        x0 = x0_target + 0.3 * torch.tanh(x) * (1 - ab).sqrt()
        if prediction == "sample":
            return x0
        return (x - ab.sqrt() * x0) / (1 - ab).sqrt()
    return model


@pytest.mark.parametrize("prediction", ["sample", "epsilon"])
def test_dpm_is_exact_for_a_perfect_model(prediction):
    s = NoiseSchedule(1000)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 9, generator=g, dtype=torch.float64)
    noise = torch.randn(4, 9, generator=g, dtype=torch.float64)

    def perfect(x, t):                       # knows x0: predicts it, or the noise that gives it
        if prediction == "sample":
            return x0
        ab = s.alpha_bars[t].view(-1, 1)
        return (x - ab.sqrt() * x0) / (1 - ab).sqrt()

    for steps in (1, 2, 3, 7, 25):
        out = sample(perfect, noise, s, "dpm++", steps, prediction)
        assert torch.allclose(out, x0, atol=1e-8), (steps, float((out - x0).abs().max()))


def test_dpm_is_deterministic_and_spends_exactly_its_steps():
    s = NoiseSchedule(1000)
    model = _toy_denoiser("sample", s, torch.zeros(1, 6, dtype=torch.float64))
    calls = []

    def counted(x, t):
        calls.append(int(t[0]))
        return model(x, t)

    noise = torch.randn(5, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    a = sample(counted, noise, s, "dpm++", 8, "sample",
               generator=torch.Generator().manual_seed(0))
    b = sample(counted, noise, s, "dpm++", 8, "sample",
               generator=torch.Generator().manual_seed(123))
    assert torch.equal(a, b)                              # no randomness: eta = 0
    assert calls[:8] == solver_timesteps(s, 8) and len(calls) == 16
    assert calls[0] == 999 and calls[7] == 0               # from pure noise to t = 0
    assert calls[:8] == sorted(calls[:8], reverse=True)
    for steps in range(1, 25):                             # distinct timesteps: no call wasted
        assert len(solver_timesteps(s, steps)) == steps


def _gaussian_denoiser(prediction: str, schedule: NoiseSchedule, mu: float, sd: float):
    """The exact denoiser for data N(mu, sd^2): E[x0 | x_t] in closed form."""
    def model(x, t):
        ab = schedule.alpha_bars[t].to(x.dtype).view(-1, 1)
        x0 = mu + ab.sqrt() * sd ** 2 / (ab * sd ** 2 + 1 - ab) * (x - ab.sqrt() * mu)
        return x0 if prediction == "sample" else (x - ab.sqrt() * x0) / (1 - ab).sqrt()
    return model


@pytest.mark.parametrize("prediction", ["sample", "epsilon"])
def test_dpm_and_ddim_agree_in_the_many_step_limit(prediction):
    """On Gaussian data the diffusion ODE's solution is known exactly. Both solvers approach it
    and each other with many steps; at 10 steps DPM-Solver++ is far closer than DDIM."""
    s, mu, sd = NoiseSchedule(1000), 0.5, 0.1
    model = _gaussian_denoiser(prediction, s, mu, sd)
    noise = torch.randn(64, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ab_T = s.alpha_bars[-1]
    exact = mu + sd * (noise - ab_T.sqrt() * mu) / (ab_T * sd ** 2 + 1 - ab_T).sqrt()

    def err(out):
        return float((out - exact).abs().max())

    ddim_many = sample(model, noise, s, "ddim", 1000, prediction)
    dpm_many = sample(model, noise, s, "dpm++", 100, prediction)
    assert float((dpm_many - ddim_many).abs().max()) < 1e-2
    assert err(dpm_many) < 1e-2 and err(ddim_many) < 1e-2
    dpm10, ddim10 = err(sample(model, noise, s, "dpm++", 10, prediction)), \
        err(sample(model, noise, s, "ddim", 10, prediction))
    assert dpm10 < 5e-3, dpm10                     # measured: 1.1e-3
    assert ddim10 > 0.1, ddim10                    # measured: 2.3e-1


def test_dpm_gives_the_same_samples_with_either_prediction():
    """The same denoiser expressed as noise or as clean-sample prediction: the same samples."""
    s = NoiseSchedule(1000)
    target = torch.linspace(-1, 1, 5, dtype=torch.float64).view(1, 5)
    noise = torch.randn(3, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for steps in (2, 5, 20):
        a = sample(_toy_denoiser("sample", s, target), noise, s, "dpm++", steps, "sample")
        b = sample(_toy_denoiser("epsilon", s, target), noise, s, "dpm++", steps, "epsilon")
        assert torch.allclose(a, b, atol=1e-6), steps
        assert math.isfinite(float(a.abs().max()))


def test_bad_step_counts_and_names_are_clear_errors():
    s = NoiseSchedule(100)
    def model(x, t):
        return x

    noise = torch.zeros(2, 3)
    for bad in (0, -1, 101, 2.5, True):
        with pytest.raises(ValueError, match="between 1 and 100"):
            sample(model, noise, s, "dpm++", bad)
    with pytest.raises(ValueError, match="needs a step count"):
        sample(model, noise, s, "dpm++", None)
    with pytest.raises(ValueError, match="dpm\\+\\+"):
        sample(model, noise, s, "ddpm", 10)
    with pytest.raises(ValueError, match="sampler must be one of"):
        sample(model, noise, s, "dpm", 10)


def test_sampling_plan_defaults_and_configs_accept_the_solver():
    assert "dpm++" in SAMPLERS
    cfg = RPGConfig(sampler="dpm++")
    assert sampling_plan(cfg) == ("dpm++", DEFAULT_STEPS["dpm++"])
    assert sampling_plan(cfg, steps=4) == ("dpm++", 4)
    assert sampling_plan(RPGConfig(sampler="dpm++", sampling_steps=3)) == ("dpm++", 3)
    # another sampler than the config's does not inherit its step count
    assert sampling_plan(RPGConfig(sampler="ddim", sampling_steps=7), "dpm++") == \
        ("dpm++", DEFAULT_STEPS["dpm++"])
    assert sampling_plan(cfg, "ddpm") == ("ddpm", None)
    assert PDiffConfig(sampler="dpm++").sampler == "dpm++"
    with pytest.raises(ValueError, match="sampler"):
        RPGConfig(sampler="unipc")


def test_rpg_samples_with_dpm_in_every_mode_and_saves_the_choice(tmp_path):
    """End to end on a tiny generator: dpm++ through RPG.sample in each mode, deterministic, and
    the sampler setting round-trips through save/load."""
    from paramgen import CheckpointSet
    from paramgen.methods import RPG, load_generator

    g = torch.Generator().manual_seed(0)
    base = torch.randn(5, 7, generator=g)
    sds = [{"fc.weight": base + 0.01 * torch.randn(5, 7, generator=g)} for _ in range(4)]
    gen = RPG(token_size=16, d_model=(16, 16), d_state=4, denoiser_channels=(1, 8),
              num_train_timesteps=50, batch_size=2, diffusion_batch=16, steps=2,
              backbone="lstm", sampler="dpm++", sampling_steps=4, partial_batch=2)
    gen.fit(CheckpointSet.from_state_dicts(sds), progress=False)
    tokens = {m: gen.sample(1, seed=3, mode=m, return_tokens=True)
              for m in ("sequential", "partial", "full")}
    assert torch.isfinite(tokens["full"]).all()
    assert torch.equal(tokens["full"], gen.sample(1, seed=3, mode="full", return_tokens=True))
    gen.save_pretrained(tmp_path / "gen")
    again = load_generator(tmp_path / "gen")
    assert (again.config.sampler, again.config.sampling_steps) == ("dpm++", 4)
    out = again.sample(2, seed=0, sampler="dpm++", steps=3)
    assert out[0]["fc.weight"].shape == (5, 7)
