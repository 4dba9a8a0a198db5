"""What IGPG declares it takes (torch-free: read for ``--help`` without loading the method)."""

from __future__ import annotations

from paramgen.methods.igpg.presets import IGPG_PRESETS
from paramgen.methods.options import MethodOptions, Option

OPTIONS = MethodOptions(
    summary="a VQ-VAE over parameter chunks and a GPT prior: one generator for a zoo of "
            "architectures and datasets (takes several collections)",
    presets=tuple(IGPG_PRESETS), collections="several", conditions=False,
    sample={
        "like": Option("the architecture to generate: a state dict, an nn.Module or a "
                       ".safetensors file (only its keys, shapes and dtypes are used)",
                       kind="file", required=True, metavar="FILE.safetensors"),
        "dataset": Option("the dataset to generate for, e.g. digits (default: the only one "
                          "the generator knows)", metavar="TEXT"),
        "temperature": Option("the prior's sampling temperature, > 0 (default: the config's)",
                              kind="float"),
        "top_k": Option("sample among the k likeliest codes (default: the config's)",
                        kind="count"),
        "residual_noise": Option("times the VQ-VAE's per-coordinate reconstruction error added "
                                 "as noise, >= 0 (default: the config's; 0: none)",
                                 kind="float"),
        "architecture": Option("free text added to the layout's description, as "
                               "info['architecture'] was in training", metavar="TEXT"),
    })
