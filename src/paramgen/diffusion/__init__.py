"""Diffusion pieces, separate and swappable: noise schedule, denoiser, samplers, loss."""

from paramgen.diffusion.denoiser import Denoiser1D, timestep_embedding
from paramgen.diffusion.loss import diffusion_loss
from paramgen.diffusion.samplers import SAMPLERS, sample
from paramgen.diffusion.schedule import NoiseSchedule

__all__ = ["Denoiser1D", "NoiseSchedule", "SAMPLERS", "diffusion_loss", "sample",
           "timestep_embedding"]
