"""Every setting of an IGPG generator (the defaults are the ``cpu`` preset's)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from paramgen.config import SharedSettings, sampling, setting, training
from paramgen.methods.igpg.presets import IGPG_PRESETS

VECTORIZATIONS = ("layer", "architecture")


@dataclass
class IGPGConfig(SharedSettings):
    NAME: ClassVar[str] = "IGPG"
    PRESETS: ClassVar[dict[str, dict]] = IGPG_PRESETS

    # chunking (§2.1, §2.2): "layer" cuts every tensor into chunks of its own, "architecture"
    # concatenates all tensors of a model in order, then cuts
    vectorization: str = setting("layer")
    chunk_size: int = setting(64)                # K: values per chunk
    tokens_per_chunk: int = setting(2)           # l: codebook tokens per chunk
    # per-coordinate standardisation of the chunks before the VQ-VAE (coordinates.py, the
    # collapse fix): over each training run ("run"), over the whole collection, or "off"
    coordinates: str = setting("run")
    # Gumbel VQ-VAE (§2.2)
    codebook_size: int = setting(512)            # m
    code_dim: int = setting(32)
    vq_hidden: int = setting(256)
    # autoregressive prior (§2.3): a small GPT over the codebook tokens
    prior_dim: int = setting(96)
    prior_layers: int = setting(3)
    prior_heads: int = setting(4)
    context: int | None = setting(None)          # max tokens of a model; None: longest seen
    dropout: float = setting(0.0)
    # conditioning: "auto" conditions on the dataset when the collections name one
    dataset_condition: str = setting("auto")     # auto | on | off
    # training: the VQ-VAE, then the prior on its tokens; AdamW, warm-up + linear decay (§4.1)
    commitment: float = training(0.25)           # gamma of eq. (2)
    codebook_weight: float = training(1.0)       # beta of eq. (2)
    tau_start: float = training(1.0)             # Gumbel-softmax temperature, annealed ...
    tau_end: float = training(0.1)               # ... to this over the VQ-VAE stage
    vq_steps: int = training(1500)
    vq_lr: float = training(1e-3)
    vq_batch: int = training(256)                # chunks a step
    prior_steps: int = training(1000)
    prior_lr: float = training(1e-3)
    prior_batch: int = training(8)               # models a step
    weight_decay: float = training(0.01)
    warmup_steps: int = training(100)
    min_lr_ratio: float = training(0.0)
    grad_clip: float = training(1.0)
    # sampling
    # 0.7: at 1.0 an occasional unlikely token breaks a model (docs/igpg.md has the sweep)
    temperature: float = sampling(0.7)
    top_k: int | None = sampling(None)
    # times the per-coordinate std of the VQ-VAE's reconstruction error added as Gaussian noise
    # to each decoded chunk (coordinates.py; 0: the decoder's output as it is)
    residual_noise: float = sampling(1.0)
    sample_batch: int = sampling(16)             # models whose tokens are drawn together

    def __post_init__(self) -> None:
        self._check_shared()
        if self.keys is not None:
            raise ValueError("IGPG generates every floating tensor of each architecture; "
                             f"keys={self.keys!r} (partial generation) is not supported")
        self._check_choices({"vectorization": VECTORIZATIONS,
                             "dataset_condition": ("auto", "on", "off"),
                             "coordinates": ("run", "collection", "off")})
        self._check_positive("chunk_size", "tokens_per_chunk", "codebook_size", "code_dim",
                             "vq_hidden", "prior_dim", "prior_layers", "prior_heads", "vq_steps",
                             "vq_batch", "prior_steps", "prior_batch", "sample_batch")
        self._check_positive("warmup_steps", allow_zero=True)
        if self.context is not None:
            self._check_positive("context")
        if self.top_k is not None:
            self._check_positive("top_k")
        if self.prior_dim % self.prior_heads:
            raise ValueError(f"IGPGConfig.prior_heads={self.prior_heads} does not divide "
                             f"prior_dim={self.prior_dim}")
        self._check_finite("commitment", "codebook_weight", "vq_lr", "prior_lr", "weight_decay",
                           "min_lr_ratio", "grad_clip", "dropout", "residual_noise", low=0.0)
        self._check_finite("tau_start", "tau_end", "temperature", low=1e-8)
