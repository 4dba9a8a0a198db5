"""Diffusion pieces, separate and swappable: noise schedule, denoiser, samplers, loss."""

from paramgen.diffusion.denoiser import ConvBlock, Denoiser1D, timestep_embedding
from paramgen.diffusion.latent_denoiser import LatentDenoiser
from paramgen.diffusion.loss import diffusion_loss
from paramgen.diffusion.samplers import DEFAULT_DDIM_STEPS, SAMPLERS, sample, sampling_plan
from paramgen.diffusion.schedule import NoiseSchedule

__all__ = ["DEFAULT_DDIM_STEPS", "ConvBlock", "Denoiser1D", "LatentDenoiser", "NoiseSchedule",
           "SAMPLERS", "diffusion_loss", "sample", "sampling_plan", "timestep_embedding"]
