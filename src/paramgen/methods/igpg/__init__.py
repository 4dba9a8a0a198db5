"""IGPG (instruction-guided parameter generation): a Gumbel VQ-VAE over chunks of normalised
parameters and a GPT prior over its tokens, conditioned on architecture and dataset texts.
One file per idea: presets, config, chunking, describe (conditioning texts), vqvae, prior,
generator."""

from paramgen.methods.igpg.config import IGPGConfig
from paramgen.methods.igpg.generator import IGPG
from paramgen.methods.igpg.presets import IGPG_PRESETS

__all__ = ["IGPG", "IGPGConfig", "IGPG_PRESETS"]
