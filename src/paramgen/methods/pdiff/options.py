"""What p-diff declares it takes (torch-free: read for ``--help`` without loading the method)."""

from __future__ import annotations

from paramgen.methods.options import MethodOptions, Option
from paramgen.methods.pdiff.presets import PDIFF_PRESETS

OPTIONS = MethodOptions(
    summary="neural network diffusion: a parameter autoencoder and a latent diffusion model "
            "(unconditional)",
    presets=tuple(PDIFF_PRESETS), collections="one", conditions=False,
    sample={
        "condition": Option("must be left out: p-diff is unconditional", kind="condition",
                            cli=False),
        "mode": Option("decoding memory: sequential one model at a time, partial "
                       "sample_batch models, full all at once (default: partial)",
                       choices=("sequential", "partial", "full")),
        "sampler": Option("ddpm walks every timestep; ddim and dpm++ (DPM-Solver++ 2M) take "
                          "steps (default: the generator's)", choices=("ddpm", "ddim", "dpm++")),
        "steps": Option("ddim / dpm++ sampling steps", kind="count"),
    })
