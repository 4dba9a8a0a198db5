"""The zoo's architectures.

* p-diff's hand-designed minis (Wang et al. 2024, appendix A.2): ``convnet-mini``, ``mlp-mini``,
  ``resnet-mini``, ``vit-mini``, ``convnext-mini``.
* The Model Zoo CNNs (Schürholt et al. 2022): ``cnn-s`` and ``cnn-m``.
* ``vit-tiny`` (a 2-block ViT) and ``mlp`` (configurable widths, optional LayerNorm), plus
  :func:`mlp_family` to build MLPs of a requested parameter count.

All of them take ``in_shape`` ``(L,)``, ``(C, L)`` or ``(C, H, W)``: signals use the 1-D
variants of every convolution/pooling layer, images the 2-D ones. Layer sizes follow the papers
for 32x32 images; smaller inputs (8x8 digits, 40-sample MNIST-1D) keep every weight shape that
does not depend on the input and skip pooling steps that would shrink the maps below the final
feature grid.

The minis follow the layer lists of p-diff's appendix A.2. For ConvNeXt-mini that reproduces
the paper's parameter count exactly (74,970 on 3x32x32); ConvNet-mini (3,270) and ResNet-mini
(3,666) come out smaller than the paper's Table 6 (24,262 and 25,138), whose layer sizes are
not given anywhere else, and ViT-mini is 75,466 against 80,714.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from paramgen.zoo.layers import (
    ChannelLayerNorm,
    InputSpec,
    TransformerBlock,
    ZooModel,
    activation as make_activation,
    adaptive_avg_pool,
    batch_norm,
    conv,
    max_pool,
    parse_in_shape,
)
from paramgen.zoo.registry import register

__all__ = [
    "MLP",
    "ConvNeXtMini",
    "ConvNetMini",
    "ModelZooCNN",
    "ResNetMini",
    "ViT",
    "mlp_family",
    "mlp_param_count",
]


def _grid(spec: InputSpec, side: int) -> int:
    """Final feature-grid length per spatial dim: ``side`` for images, ``side**2`` for signals.

    Signals get the square so that the flattened feature count, and hence every linear layer,
    is the same as for images.
    """
    return side if spec.ndim == 2 else side * side


def _conv_out(sizes: tuple[int, ...], kernel: int, padding: int, stride: int = 1
              ) -> tuple[int, ...]:
    return tuple((s + 2 * padding - kernel) // stride + 1 for s in sizes)


# ---------------------------------------------------------------------------------------------
# MLPs


class MLP(ZooModel):
    """Flatten, then ``Linear -> [LayerNorm] -> act -> [Dropout]`` per hidden width, then a head.

    ``hidden=()`` is a linear (softmax-regression) model.
    """

    def __init__(self, in_shape: Sequence[int] | int, num_classes: int,
                 hidden: Sequence[int] = (64,), layernorm: bool = False,
                 activation: str = "relu", dropout: float = 0.0) -> None:
        super().__init__(in_shape, num_classes)
        widths = tuple(hidden)
        if not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths):
            raise ValueError(f"mlp: hidden must be positive ints, got {hidden!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"mlp: dropout must be in [0, 1), got {dropout!r}")
        self.hidden = widths
        layers: list[nn.Module] = []
        d = self.spec.numel
        for w in widths:
            layers.append(nn.Linear(d, w))
            if layernorm:
                layers.append(nn.LayerNorm(w))
            layers.append(make_activation(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            d = w
        layers.append(nn.Linear(d, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.as_channels(x).flatten(1))


def mlp_param_count(in_shape: Sequence[int] | int, num_classes: int, hidden: Sequence[int],
                    layernorm: bool = False) -> int:
    """Parameter count of ``MLP(in_shape, num_classes, hidden, layernorm)`` without building it."""
    dims = [parse_in_shape(in_shape).numel, *hidden, num_classes]
    linear = sum((a + 1) * b for a, b in zip(dims[:-1], dims[1:]))
    return linear + (2 * sum(hidden) if layernorm else 0)


def mlp_family(target_params: int, in_shape: Sequence[int] | int, num_classes: int = 10,
               depth: int = 2, **kwargs) -> MLP:
    """An MLP with ``depth`` equal hidden layers, as close as possible to ``target_params``.

    Lets a benchmark sweep model size (2K to 10M parameters) with one architecture family.
    """
    if depth < 1:
        raise ValueError(f"mlp_family: depth must be >= 1, got {depth}")
    layernorm = bool(kwargs.get("layernorm", False))

    def count(w: int) -> int:
        return mlp_param_count(in_shape, num_classes, (w,) * depth, layernorm)

    if target_params < count(1):
        raise ValueError(f"mlp_family: target_params={target_params} is below the smallest "
                         f"{depth}-layer MLP for in_shape {in_shape} ({count(1)} parameters)")
    lo, hi = 1, 2
    while count(hi) < target_params:
        hi *= 2
    # Count grows monotonically with width, so bisect to the width just below the target.
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) <= target_params else (lo, mid)
    width = min((lo, hi), key=lambda w: abs(count(w) - target_params))
    return MLP(in_shape, num_classes, hidden=(width,) * depth, **kwargs)


@register("mlp")
def _build_mlp(in_shape: Sequence[int] | int, num_classes: int, **kw) -> nn.Module:
    return MLP(in_shape, num_classes, **kw)


@register("mlp-family")
def _build_mlp_family(in_shape: Sequence[int] | int, num_classes: int,
                      target_params: int = 10_000, depth: int = 2, **kw) -> nn.Module:
    """``create("mlp-family", shape, k, target_params=1_000_000)``: see :func:`mlp_family`."""
    return mlp_family(int(target_params), in_shape, num_classes, depth=depth, **kw)


@register("mlp-mini")
def _build_mlp_mini(in_shape: Sequence[int] | int, num_classes: int, **kw) -> nn.Module:
    """p-diff MLP-mini: linear (in, 64), (64, 16), (16, classes).

    The paper lists in = 1024 for CIFAR-10 (32x32); here the whole input is flattened, so a
    3x32x32 image gives in = 3072.
    """
    kw.setdefault("hidden", (64, 16))
    return MLP(in_shape, num_classes, **kw)


# ---------------------------------------------------------------------------------------------
# p-diff ConvNet-mini and ResNet-mini


class ConvNetMini(ZooModel):
    """p-diff ConvNet-mini: conv (C, 8, 7), (8, 8, 3), (8, 4, 3); linear (64, 16), (16, classes).

    Convolutions use "same" padding with a ReLU; a 2x max-pool follows conv1 and conv2 whenever
    the map stays at least as large as the final grid, and an adaptive average pool brings the
    last map to 4x4 (16 samples for signals) so linear1 always sees 4 * 16 = 64 features.
    """

    def __init__(self, in_shape: Sequence[int] | int, num_classes: int,
                 channels: Sequence[int] = (8, 8, 4), kernels: Sequence[int] = (7, 3, 3),
                 hidden: int = 16, activation: str = "relu") -> None:
        super().__init__(in_shape, num_classes)
        if len(channels) != len(kernels) or not channels:
            raise ValueError(f"convnet-mini: channels {channels!r} and kernels {kernels!r} "
                             "must be non-empty and of equal length")
        nd, grid = self.spec.ndim, _grid(self.spec, 4)
        sizes, c = self.spec.spatial, self.spec.channels
        layers: list[nn.Module] = []
        for i, (co, k) in enumerate(zip(channels, kernels)):
            layers += [conv(nd, c, co, k, padding=k // 2), make_activation(activation)]
            sizes = _conv_out(sizes, k, k // 2)
            if i < len(channels) - 1 and min(sizes) // 2 >= grid:
                layers.append(max_pool(nd))
                sizes = tuple(s // 2 for s in sizes)
            c = co
        self.features = nn.Sequential(*layers)
        self.pool = adaptive_avg_pool(nd, grid)
        self.classifier = nn.Sequential(
            nn.Linear(c * grid**nd, hidden),
            make_activation(activation),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(self.as_channels(x))).flatten(1))


class _ResidualBlock(nn.Module):
    """conv(C→bottleneck)-BN-act-conv(bottleneck→C)-BN, plus the identity, then act."""

    def __init__(self, nd: int, channels: int, kernel: int, bottleneck: int, act: str) -> None:
        super().__init__()
        # No conv bias: the BatchNorm right after it has its own shift.
        self.conv1 = conv(nd, channels, bottleneck, kernel, padding=kernel // 2, bias=False)
        self.bn1 = batch_norm(nd, bottleneck)
        self.conv2 = conv(nd, bottleneck, channels, kernel, padding=kernel // 2, bias=False)
        self.bn2 = batch_norm(nd, channels)
        self.act = make_activation(act)

    def forward(self, x: Tensor) -> Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        return self.act(self.bn2(self.conv2(out)) + x)


class ResNetMini(ZooModel):
    """p-diff ResNet-mini: conv (C, 8, 3) + BN, two residual blocks (8, 8, 3, bottleneck 4),
    linear (128, 16), (16, classes).

    Its last two BatchNorm layers (``layer2.bn1``, ``layer2.bn2``) are the ones p-diff
    generates in partial mode. The final map is average-pooled to 4x4 (16 for signals), so
    linear1 sees 8 * 16 = 128 features as in the paper.
    """

    def __init__(self, in_shape: Sequence[int] | int, num_classes: int, width: int = 8,
                 bottleneck: int = 4, kernel: int = 3, hidden: int = 16,
                 activation: str = "relu") -> None:
        super().__init__(in_shape, num_classes)
        nd, grid = self.spec.ndim, _grid(self.spec, 4)
        sizes = self.spec.spatial
        self.conv1 = conv(nd, self.spec.channels, width, kernel, padding=kernel // 2, bias=False)
        self.bn1 = batch_norm(nd, width)
        self.act = make_activation(activation)
        pools = []
        for _ in range(2):
            # Downsample before each block while the map stays at least as large as the grid.
            if min(sizes) // 2 >= grid:
                pools.append(max_pool(nd))
                sizes = tuple(s // 2 for s in sizes)
            else:
                pools.append(nn.Identity())
        self.pool1, self.pool2 = pools
        self.layer1 = _ResidualBlock(nd, width, kernel, bottleneck, activation)
        self.layer2 = _ResidualBlock(nd, width, kernel, bottleneck, activation)
        self.pool = adaptive_avg_pool(nd, grid)
        self.fc1 = nn.Linear(width * grid**nd, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.bn1(self.conv1(self.as_channels(x))))
        x = self.layer1(self.pool1(x))
        x = self.layer2(self.pool2(x))
        return self.fc2(self.act(self.fc1(self.pool(x).flatten(1))))


# ---------------------------------------------------------------------------------------------
# Model Zoo CNNs


class ModelZooCNN(ZooModel):
    """The Model Zoo CNN (Schürholt et al. 2022): three conv layers, max-pooling, two linears.

    ``conv -> act -> [pool]`` per layer, average pooling to a fixed ``grid``, flatten,
    ``Linear(channels[-1] * grid**2, hidden) -> act -> Linear(hidden, classes)``.

    At the Model Zoo's resolution (images of at least 28x28) convolutions are unpadded, as in
    the paper. Smaller inputs (8x8 digits) and signals (MNIST-1D) pad odd kernels to keep the
    size ("same") and leave even kernels unpadded. Then, at any size, the *earliest* pools of
    ``pool_after`` are dropped until the last map is at least the grid (``grid`` for images,
    ``grid**2`` for signals); at 32x32 all pools stay. Dropping early rather than late pools keeps
    the first layers at full resolution, which is what lets cnn-s reach > 90% on 8x8 digits
    (8x8 → conv → conv → pool 4x4 → 2x2 conv → 3x3, the grid of the 28x28 original).
    Weight shapes are always the Model Zoo ones.

    The default activation is tanh (one of the Model Zoo's choices): with only 4 channels
    before the classifier, ReLU units can all die at initialisation and leave a run stuck at
    chance (seen once in six seeds on digits); tanh never did.
    """

    def __init__(self, in_shape: Sequence[int] | int, num_classes: int,
                 channels: Sequence[int], kernels: Sequence[int], pool_after: Sequence[bool],
                 grid: int, hidden: int = 20, activation: str = "tanh") -> None:
        super().__init__(in_shape, num_classes)
        if not len(channels) == len(kernels) == len(pool_after) or not channels:
            raise ValueError(f"cnn: channels {channels!r}, kernels {kernels!r} and pool_after "
                             f"{pool_after!r} must be non-empty and of equal length")
        nd = self.spec.ndim
        grid_len = _grid(self.spec, grid)
        native = nd == 2 and min(self.spec.spatial) >= 28
        pads = [0 if native or k % 2 == 0 else k // 2 for k in kernels]
        pools = [bool(p) for p in pool_after]

        def final_size(pools: list[bool]) -> int:
            sizes = self.spec.spatial
            for k, pad, pool in zip(kernels, pads, pools):
                sizes = _conv_out(sizes, k, pad)
                if pool:
                    sizes = tuple(s // 2 for s in sizes)
            return min(sizes)

        for i in range(len(pools)):
            if final_size(pools) >= grid_len:
                break
            pools[i] = False
        if final_size(pools) < 1:
            raise ValueError(f"cnn: input shape {self.in_shape} is too small for kernels "
                             f"{tuple(kernels)}")
        self.pools = tuple(pools)
        c = self.spec.channels
        layers: list[nn.Module] = []
        for co, k, pad, pool in zip(channels, kernels, pads, pools):
            layers += [conv(nd, c, co, k, padding=pad), make_activation(activation)]
            if pool:
                layers.append(max_pool(nd))
            c = co
        self.features = nn.Sequential(*layers)
        self.pool = adaptive_avg_pool(nd, grid_len)
        self.classifier = nn.Sequential(
            nn.Linear(c * grid_len**nd, hidden),
            make_activation(activation),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(self.as_channels(x))).flatten(1))


@register("cnn-s")
def _build_cnn_s(in_shape: Sequence[int] | int, num_classes: int, **kw) -> nn.Module:
    """Model Zoo CNN-s: conv 8@5, pool, conv 6@5, pool, conv 4@2, 3x3 grid, fc 36→20→classes.

    2,464 parameters for 1-channel and 2,864 for 3-channel images (the paper's counts).
    """
    return ModelZooCNN(in_shape, num_classes, channels=(8, 6, 4), kernels=(5, 5, 2),
                       pool_after=(True, True, False), grid=3, **kw)


@register("cnn-m")
def _build_cnn_m(in_shape: Sequence[int] | int, num_classes: int, **kw) -> nn.Module:
    """Model Zoo CNN-m: conv 16@3, 32@3, 15@3, each then a pool, 2x2 grid, fc 60→20→classes.

    10,565 parameters for 1-channel and 10,853 for 3-channel images.
    """
    return ModelZooCNN(in_shape, num_classes, channels=(16, 32, 15), kernels=(3, 3, 3),
                       pool_after=(True, True, True), grid=2, **kw)


# ---------------------------------------------------------------------------------------------
# Vision transformers


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


# ---------------------------------------------------------------------------------------------
# ConvNeXt-mini


class _ConvNeXtBlock(nn.Module):
    """Depthwise conv → LayerNorm → Linear(4x) → GELU → Linear → layer scale, plus input."""

    def __init__(self, nd: int, dim: int, kernel: int, layer_scale: float) -> None:
        super().__init__()
        self.dwconv = conv(nd, dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale)))

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(self.dwconv(x).movedim(1, -1))
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(y)))
        return x + y.movedim(-1, 1)


class ConvNeXtMini(ZooModel):
    """p-diff ConvNeXt-mini: stage depths (1, 2, 2, 2), stage widths (16, 32, 32, 32).

    Patchify stem (stride 4 for 32x32, stride 1 for 8x8: the largest of 4/2/1 leaving at least
    8 positions), then stages separated by LayerNorm + stride-2 convolutions (kernel 1 stride 1
    once the map is a single position), global average pool, LayerNorm, linear head.
    """

    def __init__(self, in_shape: Sequence[int] | int, num_classes: int,
                 depths: Sequence[int] = (1, 2, 2, 2), dims: Sequence[int] = (16, 32, 32, 32),
                 kernel: int = 7, layer_scale: float = 1e-6) -> None:
        super().__init__(in_shape, num_classes)
        if len(depths) != len(dims) or not dims:
            raise ValueError(f"convnext-mini: depths {depths!r} and dims {dims!r} must be "
                             "non-empty and of equal length")
        nd = self.spec.ndim
        size = min(self.spec.spatial)
        stride = next(s for s in (4, 2, 1) if size // s >= 8 or s == 1)
        size //= stride
        self.stem = nn.Sequential(conv(nd, self.spec.channels, dims[0], stride, stride=stride),
                                  ChannelLayerNorm(dims[0]))
        stages: list[nn.Module] = []
        for i, (depth, dim) in enumerate(zip(depths, dims)):
            layers: list[nn.Module] = []
            if i > 0:
                k = 2 if size >= 2 else 1
                layers += [ChannelLayerNorm(dims[i - 1]), conv(nd, dims[i - 1], dim, k, stride=k)]
                size //= k
            layers += [_ConvNeXtBlock(nd, dim, kernel, layer_scale) for _ in range(depth)]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stages(self.stem(self.as_channels(x)))
        return self.head(self.norm(x.flatten(2).mean(dim=2)))


@register("convnet-mini")
def _build_convnet_mini(in_shape: Sequence[int] | int, num_classes: int, **kw) -> nn.Module:
    return ConvNetMini(in_shape, num_classes, **kw)


@register("resnet-mini")
def _build_resnet_mini(in_shape: Sequence[int] | int, num_classes: int, **kw) -> nn.Module:
    return ResNetMini(in_shape, num_classes, **kw)


@register("convnext-mini")
def _build_convnext_mini(in_shape: Sequence[int] | int, num_classes: int, **kw) -> nn.Module:
    return ConvNeXtMini(in_shape, num_classes, **kw)
