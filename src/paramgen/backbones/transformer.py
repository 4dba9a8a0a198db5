"""Causally masked transformer-encoder backbone (the RPG paper's transformer ablation)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from paramgen.backbones.common import Backbone, ProjectionHead, layer_sizes

__all__ = ["TransformerBackbone"]


def _heads(d: int, nhead: int | None) -> int:
    if nhead is not None:
        if d % nhead:
            raise ValueError(f"nhead={nhead} does not divide d_model={d}")
        return nhead
    # One head per 64 channels (4 at RPG-tiny's 256), lowered until it divides d.
    n = max(1, d // 64)
    while d % n:
        n -= 1
    return n


class TransformerBackbone(Backbone):
    """Input projection d_in -> d_model, pre-norm encoder layers under a causal mask, final
    RMSNorm and an MLP head. No positional encoding of its own: RPG's inputs already carry one.

    ``d_state`` and ``d_conv`` are ignored; ``ffn_mult`` sets the feed-forward width.
    """

    kind = "transformer"

    def __init__(self, d_in: int, d_model: int | Sequence[int], d_out: int, num_layers: int = 2,
                 d_state: int = 32, d_conv: int = 4, expand: int = 2, *,
                 nhead: int | None = None, ffn_mult: int = 4, dropout: float = 0.0,
                 head_hidden: int | None = None, out_scale: float = 0.1, norm_eps: float = 1e-5):
        sizes = layer_sizes(d_model, num_layers)
        super().__init__(d_in, d_out, sizes)
        self.in_proj = nn.Linear(d_in, sizes[0])
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d, _heads(d, nhead), dim_feedforward=ffn_mult * d,
                                       dropout=dropout, activation="gelu", batch_first=True,
                                       norm_first=True, layer_norm_eps=norm_eps)
            for d in sizes)
        self.resize = nn.ModuleList(
            nn.Linear(a, b) if a != b else nn.Identity() for a, b in zip(sizes[:-1], sizes[1:]))
        self.norm = nn.RMSNorm(sizes[-1], eps=norm_eps)
        self.head = ProjectionHead(sizes[-1], d_out, head_hidden, out_scale)

    def _run(self, x: Tensor) -> Tensor:
        length = x.shape[1]
        # Boolean mask, True = may not attend; a float -inf mask trips over bf16 autocast.
        mask = torch.ones(length, length, dtype=torch.bool, device=x.device).triu_(1)
        h = self.in_proj(x).to(x.dtype)  # residual stream in float32 under autocast
        for i, layer in enumerate(self.layers):
            if i:
                h = self.resize[i - 1](h).to(x.dtype)
            h = layer(h, src_mask=mask, is_causal=True)
        return self.head(self.norm(h))
