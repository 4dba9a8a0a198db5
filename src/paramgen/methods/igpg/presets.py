"""Named IGPG settings, as data.

``paper`` keeps the sizes the IGPG paper states (codebook of 512 entries, 64 tokens per chunk, a
context of 768 tokens, a GPT prior of ~25M parameters (Table 5: 27.8M), AdamW from 1e-4 with a
linear schedule, Gumbel temperature annealed from 1 to 1e-4). Its VQ-VAE is an MLP over a chunk
rather than VQGAN's convolutions, so its chunk is smaller than the paper's 2.7M values (an MLP
over 2.7M inputs would not fit in memory). ``cpu`` (the defaults) trains a zoo of small models in
minutes on a 2-core CPU; ``tiny`` is for tests (seconds).
"""

from __future__ import annotations

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
