"""The default base model for adapters: a small transformer with separate q, k, v, o projections.

LoRA recipes name their target modules (``targets=q,v``): the zoo's ViTs compute q, k and v with
one fused ``qkv`` layer, which a LoRA on "q" and "v" cannot reach, so the adapter base is its own
model here. It takes the zoo's input shapes (``(C, H, W)`` images, ``(L,)`` or ``(C, L)`` signals),
cuts them into patches, runs ``depth`` pre-norm encoder blocks and classifies the class token with
``head``. Everything needed to rebuild it is the JSON-able ``config`` dict.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["BASE_DEFAULTS", "AdapterTransformer", "build_base"]

# d=32, 2 blocks: big enough that a q,v LoRA of rank 4 has something to steer, small enough that
# one adapter trains in well under a second of one CPU thread on digits.
BASE_DEFAULTS: dict[str, Any] = {"dim": 32, "depth": 2, "heads": 4, "mlp_dim": 64, "patch": None}


class SelfAttention(nn.Module):
    """Multi-head self-attention with one Linear per projection, named q, k, v and o."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"adapter base: dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape

        def split(t: Tensor) -> Tensor:
            return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)))
        return self.o(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm encoder block: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, mlp_dim), nn.Linear(mlp_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


def _default_patch(spatial: Sequence[int]) -> int:
    # The smallest patch (of 2, 4, ...) leaving at most 16 patches: 2x2 on 8x8 digits, 4 on the
    # 40-sample mnist1d signals (10 patches).
    for p in range(2, max(spatial) + 1):
        if all(s % p == 0 for s in spatial) and math.prod(s // p for s in spatial) <= 16:
            return p
    return max(spatial)


class AdapterTransformer(nn.Module):
    """Patch embedding, class token, ``depth`` blocks, final LayerNorm, linear ``head``."""

    def __init__(self, in_shape: Sequence[int], num_classes: int, dim: int = 32, depth: int = 2,
                 heads: int = 4, mlp_dim: int = 64, patch: int | None = None) -> None:
        super().__init__()
        in_shape = tuple(int(s) for s in in_shape)
        if len(in_shape) == 1:
            in_shape = (1, *in_shape)
        if len(in_shape) not in (2, 3):
            raise ValueError(f"adapter base: in_shape {in_shape} must be (L,), (C, L) or (C, H, W)")
        channels, spatial = in_shape[0], in_shape[1:]
        p = _default_patch(spatial) if patch is None else int(patch)
        if p < 1 or any(s % p for s in spatial):
            raise ValueError(f"adapter base: patch {p} does not tile the input {in_shape}")
        self.in_shape, self.patch = in_shape, p
        n_patches = math.prod(s // p for s in spatial)
        self.embed = nn.Linear(channels * p ** len(spatial), dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, n_patches + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def patches(self, x: Tensor) -> Tensor:
        x = x.reshape(len(x), *self.in_shape)
        p = self.patch
        if len(self.in_shape) == 2:                                   # (B, C, L) -> (B, L/p, C*p)
            return x.unfold(2, p, p).permute(0, 2, 1, 3).flatten(2)
        x = x.unfold(2, p, p).unfold(3, p, p)                         # (B, C, H/p, W/p, p, p)
        return x.permute(0, 2, 3, 1, 4, 5).flatten(3).flatten(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.embed(self.patches(x))
        tokens = torch.cat([self.cls.expand(len(tokens), -1, -1), tokens], dim=1) + self.pos
        return self.head(self.norm(self.blocks(tokens))[:, 0])


def build_base(config: dict[str, Any], num_classes: int | None = None,
               seed: int | None = None) -> AdapterTransformer:
    """The base model described by ``config`` (``in_shape`` plus BASE_DEFAULTS' keys).

    ``num_classes`` overrides ``config["num_classes"]``; ``seed`` makes the initialisation
    reproducible without touching the global random state.
    """
    kw = {k: config.get(k, v) for k, v in BASE_DEFAULTS.items()}
    if "in_shape" not in config:
        raise ValueError(f"adapter base config {config!r} has no 'in_shape'")
    k = int(config["num_classes"] if num_classes is None else num_classes)
    if seed is None:
        return AdapterTransformer(config["in_shape"], k, **kw)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AdapterTransformer(config["in_shape"], k, **kw)
