"""Building blocks shared by the zoo: input-shape handling and 1-D/2-D agnostic layers.

Every zoo model accepts three kinds of input shape: ``(L,)`` (a 1-channel signal such as
MNIST-1D), ``(C, L)`` (a C-channel signal) and ``(C, H, W)`` (an image). Convolutional models
build their Conv1d/Conv2d (and pooling, BatchNorm) variants from the same description, so one
architecture definition serves all three.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import prod

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ACTIVATIONS",
    "Attention",
    "ChannelLayerNorm",
    "InputSpec",
    "TransformerBlock",
    "ZooModel",
    "activation",
    "adaptive_avg_pool",
    "batch_norm",
    "conv",
    "conv_out",
    "feature_grid",
    "max_pool",
    "parse_in_shape",
]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
}


def activation(name: str) -> nn.Module:
    """A fresh activation module by name (relu, gelu, tanh, sigmoid, silu, leaky_relu, elu)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(sorted(ACTIVATIONS))}")
    return ACTIVATIONS[name]()


@dataclass(frozen=True)
class InputSpec:
    """A parsed input shape: channels, spatial size and whether convolutions are 1-D or 2-D."""

    shape: tuple[int, ...]  # as given by the caller (without batch dimension)
    channels: int
    spatial: tuple[int, ...]

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (1 for signals, 2 for images)."""
        return len(self.spatial)

    @property
    def numel(self) -> int:
        """Number of input features per sample."""
        return prod(self.shape)


def parse_in_shape(in_shape: Sequence[int] | int) -> InputSpec:
    """Validate ``in_shape`` (``(L,)``, ``(C, L)`` or ``(C, H, W)``) and describe it."""
    if isinstance(in_shape, int) and not isinstance(in_shape, bool):
        in_shape = (in_shape,)
    try:
        shape = tuple(in_shape)
    except TypeError:
        raise ValueError(f"in_shape must be a tuple of ints, got {in_shape!r}") from None
    if not 1 <= len(shape) <= 3 or not all(
        isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape
    ):
        raise ValueError(
            f"in_shape must be (L,), (C, L) or (C, H, W) with positive ints, got {in_shape!r}"
        )
    if len(shape) == 1:
        return InputSpec(shape, 1, shape)
    return InputSpec(shape, shape[0], shape[1:])


class ZooModel(nn.Module):
    """Base class: remembers the input shape and reshapes flat or channel-less batches.

    The shape is kept as a plain attribute (not a buffer) so state dicts hold only weights.
    """

    def __init__(self, in_shape: Sequence[int] | int, num_classes: int) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.spec = parse_in_shape(in_shape)
        self.in_shape = self.spec.shape
        self.num_classes = num_classes

    def as_channels(self, x: Tensor) -> Tensor:
        """``x`` as ``(B, C, *spatial)``, e.g. mnist1d's ``(B, 40)`` becomes ``(B, 1, 40)``."""
        expected = self.spec.numel
        if x.ndim < 2 or prod(x.shape[1:]) != expected:
            raise ValueError(f"{type(self).__name__} expects inputs of shape (B, "
                             f"{', '.join(map(str, self.in_shape))}), got {tuple(x.shape)}")
        return x.reshape(x.shape[0], self.spec.channels, *self.spec.spatial)


class ConvClassifier(ZooModel):
    """Conv features, average pooling to a fixed grid, flatten, a two-layer classifier head.

    Subclasses build their conv stack and call :meth:`finish`; the module names (``features``,
    ``pool``, ``classifier``) are the state dicts' key prefixes.
    """

    def finish(self, layers: list[nn.Module], channels: int, ndim: int, grid: int, hidden: int,
               activation_name: str) -> None:
        self.features = nn.Sequential(*layers)
        self.pool = adaptive_avg_pool(ndim, grid)
        self.classifier = nn.Sequential(
            nn.Linear(channels * grid**ndim, hidden),
            activation(activation_name),
            nn.Linear(hidden, self.num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(self.as_channels(x))).flatten(1))


def conv(ndim: int, c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0,
         groups: int = 1, bias: bool = True) -> nn.Module:
    """Conv1d or Conv2d depending on ``ndim``."""
    cls = nn.Conv1d if ndim == 1 else nn.Conv2d
    return cls(c_in, c_out, kernel, stride=stride, padding=padding, groups=groups, bias=bias)


def batch_norm(ndim: int, channels: int) -> nn.Module:
    """BatchNorm1d or BatchNorm2d depending on ``ndim``."""
    return nn.BatchNorm1d(channels) if ndim == 1 else nn.BatchNorm2d(channels)


def max_pool(ndim: int, kernel: int = 2) -> nn.Module:
    """MaxPool1d or MaxPool2d depending on ``ndim``."""
    return nn.MaxPool1d(kernel) if ndim == 1 else nn.MaxPool2d(kernel)


def adaptive_avg_pool(ndim: int, size: int) -> nn.Module:
    """Adaptive average pooling to ``size`` (1-D) or ``size x size`` (2-D)."""
    return nn.AdaptiveAvgPool1d(size) if ndim == 1 else nn.AdaptiveAvgPool2d(size)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a ``(B, C, *spatial)`` tensor (ConvNeXt style)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.movedim(1, -1)).movedim(-1, 1)


class Attention(nn.Module):
    """Multi-head self-attention whose inner width ``heads * head_dim`` may differ from ``dim``."""

    def __init__(self, dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        inner = heads * head_dim
        self.qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.proj = nn.Linear(inner, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, self.heads * self.head_dim))


class TransformerBlock(nn.Module):
    """Pre-norm transformer encoder block: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, head_dim: int, mlp_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, head_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def feature_grid(spec: InputSpec, side: int) -> int:
    """Final feature-grid length per spatial dim: ``side`` for images, ``side**2`` for signals.

    Signals get the square so that the flattened feature count, and hence every linear layer,
    is the same as for images.
    """
    return side if spec.ndim == 2 else side * side


def conv_out(sizes: tuple[int, ...], kernel: int, padding: int, stride: int = 1
              ) -> tuple[int, ...]:
    return tuple((s + 2 * padding - kernel) // stride + 1 for s in sizes)
