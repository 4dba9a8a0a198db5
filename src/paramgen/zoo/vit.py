"""Small vision transformers: p-diff's ``vit-mini`` and the 2-block ``vit-tiny``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from paramgen.zoo.layers import (
    TransformerBlock,
    ZooModel,
    conv,
)
from paramgen.zoo.registry import register

__all__ = ["ViT"]


def _patch_size(spatial: tuple[int, ...], max_tokens: int, min_area: int = 4) -> int:
    """Smallest patch size tiling ``spatial`` with at most ``max_tokens`` patches of at least
    ``min_area`` input positions each.

    One-pixel tokens train badly on tiny inputs (digits: 91% with 1x1 patches, 97% with 2x2;
    MNIST-1D: 81% with length-2 patches, 87% with length-4), hence the minimum area.
    """
    common = math.gcd(*spatial)
    divisors = [p for p in range(1, common + 1) if common % p == 0]
    fits = [p for p in divisors if math.prod(s // p for s in spatial) <= max_tokens]
    for p in fits:
        # Also keep a few tokens: a single whole-input patch would make attention pointless.
        if p ** len(spatial) >= min_area and math.prod(s // p for s in spatial) >= min_area:
            return p
    # Inputs too small for both fall back to the finest tiling that fits.
    return fits[0] if fits else common


class ViT(ZooModel):
    """A small Vision Transformer: patch embedding, pre-norm blocks, class token or mean pool.

    Unless ``patch_size`` is given, the patch is the smallest that tiles the input with at most
    ``max_tokens`` patches of at least 4 positions: 4x4 for 32x32 images (64 tokens), 2x2 for
    8x8 digits (16 tokens), length 4 for 40-sample signals (10 tokens).
    """

    def __init__(self, in_shape: Sequence[int] | int, num_classes: int, dim: int = 64,
                 depth: int = 4, heads: int = 4, head_dim: int = 8, mlp_dim: int = 64,
                 max_tokens: int = 64, patch_size: int | None = None, pool: str = "cls") -> None:
        super().__init__(in_shape, num_classes)
        if pool not in ("cls", "mean"):
            raise ValueError(f"vit: pool must be 'cls' or 'mean', got {pool!r}")
        spatial, nd = self.spec.spatial, self.spec.ndim
        p = _patch_size(spatial, max_tokens) if patch_size is None else patch_size
        if p < 1 or any(s % p for s in spatial):
            raise ValueError(f"vit: patch_size {p} does not tile the input {self.in_shape}")
        self.patch_size, self.pool_mode = p, pool
        n_tokens = math.prod(s // p for s in spatial)
        self.patch_embed = conv(nd, self.spec.channels, dim, p, stride=p)
        extra = 1 if pool == "cls" else 0
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if extra else None
        self.pos_embed = nn.Parameter(torch.randn(1, n_tokens + extra, dim) * 0.02)
        self.blocks = nn.Sequential(
            *[TransformerBlock(dim, heads, head_dim, mlp_dim) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.patch_embed(self.as_channels(x)).flatten(2).transpose(1, 2)
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(len(tokens), -1, -1), tokens], dim=1)
        tokens = self.norm(self.blocks(tokens + self.pos_embed))
        feat = tokens[:, 0] if self.pool_mode == "cls" else tokens.mean(dim=1)
        return self.head(feat)


@register("vit-mini")
def _build_vit_mini(in_shape: Sequence[int] | int, num_classes: int, **kw) -> nn.Module:
    """p-diff ViT-mini: 64 tokens of dim 64, depth 4, 4 heads of dim 8, feed-forward 64."""
    cfg = dict(dim=64, depth=4, heads=4, head_dim=8, mlp_dim=64, max_tokens=64)
    return ViT(in_shape, num_classes, **{**cfg, **kw})


@register("vit-tiny")
def _build_vit_tiny(in_shape: Sequence[int] | int, num_classes: int, **kw) -> nn.Module:
    """A 2-block ViT of width 48 (3 heads of 16, feed-forward 96), class-token pooling."""
    cfg = dict(dim=48, depth=2, heads=3, head_dim=16, mlp_dim=96, max_tokens=64)
    return ViT(in_shape, num_classes, **{**cfg, **kw})
