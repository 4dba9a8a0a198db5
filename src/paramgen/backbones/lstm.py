"""LSTM backbone: stacked LSTM layers, final RMSNorm and an MLP head."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from paramgen.backbones.common import Backbone, ProjectionHead, layer_sizes

__all__ = ["LSTMBackbone"]


class LSTMBackbone(Backbone):
    """``num_layers`` LSTM layers of hidden size ``d_model`` (one width per layer allowed).

    ``d_state``, ``d_conv`` and ``expand`` are accepted for a uniform :func:`build` signature and
    ignored.
    """

    kind = "lstm"

    def __init__(self, d_in: int, d_model: int | Sequence[int], d_out: int, num_layers: int = 2,
                 d_state: int = 32, d_conv: int = 4, expand: int = 2, *,
                 head_hidden: int | None = None, out_scale: float = 0.1, norm_eps: float = 1e-5):
        sizes = layer_sizes(d_model, num_layers)
        super().__init__(d_in, d_out, sizes)
        # One nn.LSTM per layer so that layers may differ in width.
        ins = (d_in,) + sizes[:-1]
        self.layers = nn.ModuleList(nn.LSTM(i, h, batch_first=True) for i, h in zip(ins, sizes))
        self.norm = nn.RMSNorm(sizes[-1], eps=norm_eps)
        self.head = ProjectionHead(sizes[-1], d_out, head_hidden, out_scale)

    def _run(self, x: Tensor) -> Tensor:
        h = x
        for lstm in self.layers:
            h, _ = lstm(h)
        return self.head(self.norm(h.to(x.dtype)))  # bf16 under autocast; norm in float32

    def init_state(self, batch: int, device: torch.device | str | None = None
                   ) -> list[tuple[Tensor, Tensor]]:
        device = self.norm.weight.device if device is None else device
        return [(torch.zeros(1, batch, lstm.hidden_size, device=device),
                 torch.zeros(1, batch, lstm.hidden_size, device=device)) for lstm in self.layers]

    def forward_stateful(self, x: Tensor, state: list[tuple[Tensor, Tensor]]
                         ) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        h = x
        new_state = []
        for lstm, s in zip(self.layers, state):
            h, s = lstm(h, s)
            new_state.append(s)
        return self.head(self.norm(h.to(x.dtype))), new_state

    def step(self, x: Tensor, state: list[tuple[Tensor, Tensor]]
             ) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        if x.dim() != 2 or x.shape[-1] != self.d_in:
            raise ValueError(f"step expects one token [batch, {self.d_in}], got {tuple(x.shape)}")
        h = x.unsqueeze(1)
        new_state = []
        for lstm, s in zip(self.layers, state):
            h, s = lstm(h, s)
            new_state.append(s)
        return self.head(self.norm(h.squeeze(1).to(x.dtype))), new_state
