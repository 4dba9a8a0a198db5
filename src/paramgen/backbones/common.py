"""Pieces shared by every backbone: the base class, residual blocks, the output head."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

__all__ = ["Backbone", "PreNormResidual", "ProjectionHead", "ResidualStack", "layer_sizes"]


def layer_sizes(d_model: int | Sequence[int], num_layers: int) -> tuple[int, ...]:
    """Per-layer widths from an int (same for every layer) or one width per layer."""
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"num_layers must be an integer >= 1, got {num_layers!r}")
    if isinstance(d_model, int) and not isinstance(d_model, bool):
        sizes = (d_model,) * num_layers
    else:
        sizes = tuple(d_model)
        if len(sizes) != num_layers:
            raise ValueError(f"d_model gives {len(sizes)} layer widths {sizes} but num_layers is "
                             f"{num_layers}; pass one width per layer")
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, int) or s < 1:
            raise ValueError(f"layer widths must be positive integers, got {sizes}")
    return sizes


def _check_dim(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class ProjectionHead(nn.Module):
    """Two-layer MLP from the last hidden width to ``d_out``.

    The last layer starts small (weights ~ ``out_scale / sqrt(hidden)``, zero bias): the
    prototypes are added to the denoiser's feature maps, so large initial prototypes would swamp
    them, while exactly zero ones would start the denoiser blind to position.
    """

    def __init__(self, d: int, d_out: int, hidden: int | None = None, out_scale: float = 0.1):
        super().__init__()
        hidden = d if hidden is None else _check_dim("head_hidden", hidden)
        self.fc1 = nn.Linear(d, hidden)
        self.act = nn.SiLU()
        self.fc2 = nn.Linear(hidden, d_out)
        with torch.no_grad():
            nn.init.normal_(self.fc2.weight, std=out_scale / math.sqrt(hidden))
            nn.init.zeros_(self.fc2.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class PreNormResidual(nn.Module):
    """``x + mixer(RMSNorm(x))``."""

    def __init__(self, d: int, mixer: nn.Module, eps: float = 1e-5):
        super().__init__()
        self.norm = nn.RMSNorm(d, eps=eps)
        self.mixer = mixer

    def forward(self, x: Tensor) -> Tensor:
        return x + self.mixer(self.norm(x))


class Backbone(nn.Module):
    """Base class: a token sequence [B, L, d_in] -> one prototype per token [B, L, d_out].

    Unbatched input [L, d_in] is accepted too and gives [L, d_out]. ``causal`` is True when
    output t depends on inputs <= t only (the recurrent kinds); the ``"none"`` ablation has
    ``causal = True`` as well, in the stronger sense that output t depends on input t only.
    ``config`` holds the keyword arguments that rebuild the module with
    :func:`paramgen.backbones.build`.
    """

    kind: str = ""
    causal: bool = True

    def __init__(self, d_in: int, d_out: int, sizes: tuple[int, ...]):
        super().__init__()
        self.d_in = _check_dim("d_in", d_in)
        self.d_out = _check_dim("d_out", d_out)
        self.sizes = sizes
        self.config: dict[str, Any] = {}

    def _run(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """[B, L, d_in] (or [L, d_in]) -> [B, L, d_out] (or [L, d_out])."""
        unbatched = x.dim() == 2
        if unbatched:
            x = x.unsqueeze(0)
        if x.dim() != 3 or x.shape[-1] != self.d_in or x.shape[1] < 1:
            raise ValueError(f"{self.kind} backbone expects [batch, L >= 1, {self.d_in}] "
                             f"(or [L, {self.d_in}]), got {tuple(x.shape)}")
        y = self._run(x)
        return y.squeeze(0) if unbatched else y

    def init_state(self, batch: int, device: torch.device | str | None = None) -> Any:
        """State before the first token, for :meth:`step` (kinds that support stepping)."""
        raise NotImplementedError(f"the {self.kind} backbone does not support step()")

    def step(self, x: Tensor, state: Any) -> tuple[Tensor, Any]:
        """One token [B, d_in] -> (prototype [B, d_out], next state)."""
        raise NotImplementedError(f"the {self.kind} backbone does not support step()")

    @property
    def streams(self) -> bool:
        """Whether this kind carries a state from one block of tokens to the next, so a long
        sequence can be run a block at a time (:meth:`forward_stateful`) in bounded memory."""
        return type(self).init_state is not Backbone.init_state

    def forward_stateful(self, x: Tensor, state: Any) -> tuple[Tensor, Any]:
        """The tokens [B, C, d_in] that follow ``state`` -> (prototypes [B, C, d_out], the state
        after them). Running a sequence block by block gives what one forward call gives.
        This default steps token by token; kinds override it with a block-wise computation."""
        outs = []
        for t in range(x.shape[1]):
            y, state = self.step(x[:, t], state)
            outs.append(y)
        return torch.stack(outs, 1), state


class ResidualStack(Backbone):
    """Input projection, pre-norm residual blocks (resized between layers of different width),
    final RMSNorm and :class:`ProjectionHead`. Shared by the mamba and ``"none"`` kinds."""

    def __init__(self, d_in: int, sizes: tuple[int, ...], d_out: int,
                 make_mixer: Callable[[int], nn.Module], head_hidden: int | None = None,
                 out_scale: float = 0.1, norm_eps: float = 1e-5):
        super().__init__(d_in, d_out, sizes)
        self.in_proj = nn.Linear(d_in, sizes[0]) if d_in != sizes[0] else nn.Identity()
        self.blocks = nn.ModuleList(PreNormResidual(d, make_mixer(d), norm_eps) for d in sizes)
        # RPG-Large widens from 12288 to 16384 between its two layers.
        self.resize = nn.ModuleList(
            nn.Linear(a, b) if a != b else nn.Identity() for a, b in zip(sizes[:-1], sizes[1:]))
        self.norm = nn.RMSNorm(sizes[-1], eps=norm_eps)
        self.head = ProjectionHead(sizes[-1], d_out, head_hidden, out_scale)

    def _carry(self, x: Tensor, state: list[Any],
               advance: Callable[[nn.Module, Tensor, Any], tuple[Tensor, Any]]
               ) -> tuple[Tensor, list[Any]]:
        """The stack with each mixer advanced by ``advance(mixer, input, its state)``."""
        h = self.in_proj(x).to(x.dtype)
        new_state = []
        for i, block in enumerate(self.blocks):
            if i:
                h = self.resize[i - 1](h).to(x.dtype)
            out, s = advance(block.mixer, block.norm(h), state[i])
            h = h + out
            new_state.append(s)
        return self.head(self.norm(h)), new_state

    def forward_stateful(self, x: Tensor, state: list[Any]) -> tuple[Tensor, list[Any]]:
        return self._carry(x, state, lambda mixer, h, s: mixer.forward_stateful(h, s))

    def _run(self, x: Tensor) -> Tensor:
        # The residual stream stays in the input dtype (float32 under autocast) so that bf16
        # rounding does not accumulate through the blocks.
        h = self.in_proj(x).to(x.dtype)
        for i, block in enumerate(self.blocks):
            if i:
                h = self.resize[i - 1](h).to(x.dtype)
            h = block(h)
        return self.head(self.norm(h))


def scale_residual_out(linear: nn.Linear, num_layers: int) -> None:
    """Shrink a residual branch's output layer by 1/sqrt(num_layers) (GPT-2 / Mamba init), so the
    residual stream's variance does not grow with depth at initialisation."""
    with torch.no_grad():
        linear.weight.div_(math.sqrt(num_layers))
