"""Every setting of an IGPG generator, and the named presets.

``paper`` keeps the sizes the IGPG paper states (codebook of 512 entries, 64 tokens per chunk, a
context of 768 tokens, a GPT prior of ~27M parameters, AdamW from 1e-4 with a linear schedule,
Gumbel temperature annealed from 1 to 1e-4). Its VQ-VAE is a plain MLP over a chunk rather than
VQGAN's convolutions, so its chunk size is smaller than the paper's 2.7M values (an MLP over 2.7M
inputs would not fit in memory). ``cpu`` trains a zoo of small models in minutes on a 2-core CPU;
``tiny`` is for tests (seconds).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

VECTORIZATIONS = ("layer", "architecture")


@dataclass
class IGPGConfig:
    # chunking (§2.1, §2.2): "layer" cuts every tensor into chunks of its own, "architecture"
    # concatenates all tensors of a model in order, then cuts
    vectorization: str = "layer"
    chunk_size: int = 64                 # K: values per chunk
    tokens_per_chunk: int = 4            # l: codebook tokens per chunk
    # Gumbel VQ-VAE (§2.2)
    codebook_size: int = 512             # m
    code_dim: int = 32
    vq_hidden: int = 256
    commitment: float = 0.25             # gamma
    codebook_weight: float = 1.0         # beta
    tau_start: float = 1.0               # Gumbel-softmax temperature, annealed ...
    tau_end: float = 0.1                 # ... to this over the VQ-VAE stage
    vq_steps: int = 3000
    vq_lr: float = 1e-3
    vq_batch: int = 256                  # chunks a step
    # autoregressive prior (§2.3): a small GPT over the codebook tokens
    prior_dim: int = 128
    prior_layers: int = 4
    prior_heads: int = 4
    context: int | None = None           # max tokens a model may have; None: the longest seen
    prior_steps: int = 1500
    prior_lr: float = 1e-3
    prior_batch: int = 16                # models a step
    dropout: float = 0.0
    # shared training recipe: AdamW, warm-up then linear decay (§4.1)
    weight_decay: float = 0.01
    warmup_steps: int = 100
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0
    # sampling
    temperature: float = 1.0
    top_k: int | None = None
    sample_batch: int = 16               # models decoded together
    # conditioning: "auto" conditions on the dataset when the collections name one
    dataset_condition: str = "auto"      # auto | on | off
    device: str = "auto"
    save_every: int = 500

    def __post_init__(self) -> None:
        if self.vectorization not in VECTORIZATIONS:
            raise ValueError(f"IGPGConfig.vectorization must be one of {VECTORIZATIONS}, "
                             f"got {self.vectorization!r}")
        if self.dataset_condition not in ("auto", "on", "off"):
            raise ValueError("IGPGConfig.dataset_condition must be auto, on or off, got "
                             f"{self.dataset_condition!r}")
        for name in ("chunk_size", "tokens_per_chunk", "codebook_size", "code_dim", "vq_hidden",
                     "vq_steps", "vq_batch", "prior_dim", "prior_layers", "prior_heads",
                     "prior_steps", "prior_batch", "sample_batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"IGPGConfig.{name} must be a positive integer, "
                                 f"got {getattr(self, name)!r}")
        if self.prior_dim % self.prior_heads:
            raise ValueError(f"IGPGConfig.prior_heads={self.prior_heads} does not divide "
                             f"prior_dim={self.prior_dim}")
        if self.top_k is not None and int(self.top_k) < 1:
            raise ValueError(f"IGPGConfig.top_k must be >= 1 or None, got {self.top_k}")
        if not self.temperature > 0:
            raise ValueError(f"IGPGConfig.temperature must be > 0, got {self.temperature}")

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "IGPGConfig":
        if name not in IGPG_PRESETS:
            raise ValueError(f"unknown IGPG preset {name!r}; known: {sorted(IGPG_PRESETS)}")
        return cls.from_dict({**IGPG_PRESETS[name], **overrides})

    @classmethod
    def from_dict(cls, values: dict) -> "IGPGConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown IGPG config keys {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


IGPG_PRESETS: dict[str, dict] = {
    "cpu": {},
    "tiny": dict(chunk_size=64, tokens_per_chunk=2, codebook_size=64, code_dim=16,
                 vq_hidden=64, vq_steps=60, vq_batch=64, prior_dim=32, prior_layers=1,
                 prior_heads=2, prior_steps=40, prior_batch=4, warmup_steps=5),
    "paper": dict(chunk_size=4096, tokens_per_chunk=64, codebook_size=512, code_dim=64,
                  vq_hidden=2048, tau_end=1e-4, vq_lr=1e-4, vq_steps=100_000,
                  prior_dim=512, prior_layers=8, prior_heads=8, context=768, prior_lr=1e-4,
                  prior_steps=100_000, prior_batch=32, warmup_steps=0, dropout=0.1),
}
