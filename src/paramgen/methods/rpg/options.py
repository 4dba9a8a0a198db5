"""What RPG declares it takes (torch-free: read for ``--help`` without loading the method)."""

from __future__ import annotations

from paramgen.methods.options import MethodOptions, Option
from paramgen.methods.rpg.config import SAMPLING_MODES
from paramgen.methods.rpg.presets import RPG_PRESETS

OPTIONS = MethodOptions(
    summary="recurrent diffusion: a recurrent backbone over a model's tokens and a diffusion "
            "head per token (learns from task conditions)",
    presets=tuple(RPG_PRESETS), collections="one", conditions=True,
    sample={
        "condition": Option("task condition: bits such as 0101010101, or one number per "
                            "condition value; required when trained with conditions",
                            kind="condition"),
        "mode": Option("sequential denoises one model and a few tokens at a time (least "
                       "memory), partial a batch of tokens, full everything at once "
                       "(default: the generator's)", choices=SAMPLING_MODES),
        "sampler": Option("ddpm walks every timestep; ddim and dpm++ (DPM-Solver++ 2M) take "
                          "steps (default: the generator's)", choices=("ddpm", "ddim", "dpm++")),
        "steps": Option("ddim / dpm++ sampling steps", kind="count"),
        "state": Option("the permutation state every model uses (default: drawn per model)",
                        kind="int"),
        "guidance": Option("classifier-free guidance weight, >= 0, for a generator trained "
                           "with condition_dropout (default 1: none)", kind="float"),
        "return_tokens": Option("give the raw tokens [n, L, T] instead of state dicts",
                                kind="flag", cli=False, files=False),
    })
