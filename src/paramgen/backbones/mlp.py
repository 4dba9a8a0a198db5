"""The ``"none"`` ablation: the recurrent model with its recurrence removed.

Same stack as the Mamba backbone (input projection, pre-norm residual blocks, final norm, head),
but each block is a per-token MLP, so output t is a function of input t alone.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from paramgen.backbones.common import ResidualStack, layer_sizes, scale_residual_out

__all__ = ["TokenMLP", "TokenMLPBackbone"]


class TokenMLP(nn.Module):
    """Linear(d, expand*d) -> SiLU -> Linear(expand*d, d), applied to every token alone."""

    def __init__(self, d: int, expand: int = 2):
        super().__init__()
        self.fc1 = nn.Linear(d, expand * d)
        self.act = nn.SiLU()
        self.fc2 = nn.Linear(expand * d, d)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class TokenMLPBackbone(ResidualStack):
    """Per-token residual MLP stack; ``d_state`` and ``d_conv`` are ignored."""

    kind = "none"

    def __init__(self, d_in: int, d_model: int | Sequence[int], d_out: int, num_layers: int = 2,
                 d_state: int = 32, d_conv: int = 4, expand: int = 2, *,
                 head_hidden: int | None = None, out_scale: float = 0.1, norm_eps: float = 1e-5):
        sizes = layer_sizes(d_model, num_layers)
        if isinstance(expand, bool) or not isinstance(expand, int) or expand < 1:
            raise ValueError(f"expand must be a positive integer, got {expand!r}")

        def make_mixer(d: int) -> nn.Module:
            mlp = TokenMLP(d, expand)
            scale_residual_out(mlp.fc2, num_layers)
            return mlp

        super().__init__(d_in, sizes, d_out, make_mixer, head_hidden, out_scale, norm_eps)

    def init_state(self, batch: int, device: torch.device | str | None = None) -> None:
        return None  # nothing carries over between tokens

    def forward_stateful(self, x: Tensor, state: None) -> tuple[Tensor, None]:
        return self._run(x), None

    def step(self, x: Tensor, state: None) -> tuple[Tensor, None]:
        if x.dim() != 2 or x.shape[-1] != self.d_in:
            raise ValueError(f"step expects one token [batch, {self.d_in}], got {tuple(x.shape)}")
        return self._run(x.unsqueeze(1)).squeeze(1), None
