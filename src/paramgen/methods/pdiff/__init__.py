"""p-diff, neural network diffusion: config, presets, networks, generator (one file each)."""

from paramgen.keys import last_norm_keys, resolve_keys
from paramgen.methods.pdiff.config import PDiffConfig
from paramgen.methods.pdiff.generator import PDiff, split_steps
from paramgen.methods.pdiff.network import ParameterAutoencoder, PDiffNetwork
from paramgen.methods.pdiff.presets import PDIFF_PRESETS

__all__ = ["PDIFF_PRESETS", "PDiff", "PDiffConfig", "PDiffNetwork", "ParameterAutoencoder",
           "last_norm_keys", "resolve_keys", "split_steps"]
