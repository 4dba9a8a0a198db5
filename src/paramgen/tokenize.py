"""Parameter tokenization: state dict <-> fixed-size tokens, with an exact inverse.

Every floating tensor of at least one dimension is generated: it is normalised by the mean and
std of that tensor over the whole collection (BatchNorm ``running_var`` goes through ``log`` first,
because variances span orders of magnitude and must stay positive), flattened, and cut into tokens
of ``token_size`` values; the last token of a layer is padded and the padding is masked out of
every loss. Integer and boolean buffers (``num_batches_tracked``) and 0-d scalars are copied from a
reference checkpoint, never generated.

Three ways to cut, the RPG paper's tokenization ablation:
  * ``layer``   (default) each tensor is cut on its own; a token never spans two tensors.
  * ``flat``    all tensors are concatenated, then cut; tokens may span tensors.
  * ``channel`` each output channel (first dimension) of a tensor of two or more dimensions is
                cut on its own, so a token never spans two channels.

Each token carries a position (layer index, index within layer) for the position embedding.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Iterable, Mapping, Sequence

import torch
from torch import Tensor

MODES = ("layer", "flat", "channel")
LOG_TRANSFORM_SUFFIXES = ("running_var",)
_LOG_EPS = 1e-12


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _dtype(name: str) -> torch.dtype:
    dt = getattr(torch, name, None)
    if not isinstance(dt, torch.dtype):
        raise ValueError(f"unknown dtype {name!r} in tokenizer layout")
    return dt


def is_generated(tensor: Tensor) -> bool:
    """Whether a tensor of a state dict is generated (else it is copied)."""
    return tensor.is_floating_point() and tensor.dim() >= 1 and tensor.numel() > 0


@dataclass
class LayerLayout:
    """Where one generated tensor lives in the token sequence and how it is normalised."""

    key: str
    shape: list[int]
    dtype: str
    log_transform: bool
    mean: float
    std: float
    # Each chunk is (start, length) into the flattened tensor; a chunk is cut into tokens on its
    # own. ``layer`` mode has one chunk per tensor, ``channel`` mode one per output channel.
    chunks: list[list[int]] = field(default_factory=list)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


class Tokenizer:
    """Turns state dicts of one architecture into token tensors [L, T] and back.

    Build it with :meth:`fit` over a collection (the normalisation statistics come from there),
    or from a saved layout with :meth:`from_config`.
    """

    def __init__(self, token_size: int = 256, mode: str = "layer",
                 layers: Sequence[LayerLayout] = (), copied: Mapping[str, Tensor] | None = None,
                 key_order: Sequence[str] = ()) -> None:
        if mode not in MODES:
            raise ValueError(f"tokenization mode must be one of {MODES}, got {mode!r}")
        if token_size < 1:
            raise ValueError(f"token_size must be a positive integer, got {token_size}")
        self.token_size = int(token_size)
        self.mode = mode
        self.layers = list(layers)
        self.copied = dict(copied or {})
        self.key_order = list(key_order)
        self._build_index()

    # ----------------------------------------------------------------------------- building
    @classmethod
    def fit(cls, state_dicts: Iterable[Mapping[str, Tensor]], token_size: int = 256,
            mode: str = "layer") -> "Tokenizer":
        """Compute per-layer statistics over a collection and lay out the tokens."""
        sums: dict[str, float] = {}
        sq_sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        reference: dict[str, Tensor] | None = None
        for sd in state_dicts:
            if reference is None:
                reference = {k: v.detach().clone() for k, v in sd.items()}
            elif list(sd.keys()) != list(reference.keys()):
                raise ValueError("state dicts of the collection have different keys: "
                                 f"{sorted(set(sd) ^ set(reference))}")
            for key, value in sd.items():
                if not is_generated(reference[key]):
                    continue
                x = cls._forward_transform(key, value.detach().double())
                sums[key] = sums.get(key, 0.0) + float(x.sum())
                sq_sums[key] = sq_sums.get(key, 0.0) + float((x * x).sum())
                counts[key] = counts.get(key, 0) + x.numel()
        if reference is None:
            raise ValueError("cannot fit a tokenizer on an empty collection")
        layers = []
        for key, value in reference.items():
            if not is_generated(value):
                continue
            mean = sums[key] / counts[key]
            var = max(sq_sums[key] / counts[key] - mean * mean, 0.0)
            std = math.sqrt(var)
            # A tensor constant over the whole collection has no spread to normalise by.
            if not std > 1e-12 * max(1.0, abs(mean)):
                std = 1.0
            layers.append(LayerLayout(
                key=key, shape=list(value.shape), dtype=_dtype_name(value.dtype),
                log_transform=key.endswith(LOG_TRANSFORM_SUFFIXES), mean=mean, std=std,
                chunks=cls._chunks(value.shape, mode)))
        copied = {k: v for k, v in reference.items() if not is_generated(v)}
        return cls(token_size, mode, layers, copied, key_order=list(reference.keys()))

    @staticmethod
    def _chunks(shape: Sequence[int], mode: str) -> list[list[int]]:
        numel = math.prod(shape)
        if mode == "channel" and len(shape) >= 2:
            row = numel // shape[0]
            return [[c * row, row] for c in range(shape[0])]
        return [[0, numel]]

    @staticmethod
    def _forward_transform(key: str, x: Tensor) -> Tensor:
        if key.endswith(LOG_TRANSFORM_SUFFIXES):
            return torch.log(x.clamp_min(_LOG_EPS))
        return x

    def _build_index(self) -> None:
        """Precompute gather indices: token slot -> flat position in the concatenated vector."""
        T = self.token_size
        flat_offsets, total = [], 0
        for layer in self.layers:
            flat_offsets.append(total)
            total += layer.numel
        self.num_values = total
        positions: list[tuple[int, int]] = []
        src: list[Tensor] = []
        if self.mode == "flat":
            n_tokens = max(1, math.ceil(total / T)) if total else 0
            idx = torch.arange(n_tokens * T)
            idx[idx >= total] = -1
            src.append(idx.view(n_tokens, T))
            # Tokens may span layers; the layer coordinate is that of the token's first value.
            layer_of = torch.zeros(total, dtype=torch.long)
            for i, (layer, off) in enumerate(zip(self.layers, flat_offsets)):
                layer_of[off:off + layer.numel] = i
            starts_in_layer: dict[int, int] = {}
            for t in range(n_tokens):
                li = int(layer_of[t * T])
                j = starts_in_layer.get(li, 0)
                starts_in_layer[li] = j + 1
                positions.append((li, j))
        else:
            for i, (layer, off) in enumerate(zip(self.layers, flat_offsets)):
                j = 0
                for start, length in layer.chunks:
                    n_tokens = math.ceil(length / T)
                    idx = torch.arange(n_tokens * T)
                    idx = torch.where(idx < length, idx + off + start, torch.full_like(idx, -1))
                    src.append(idx.view(n_tokens, T))
                    positions.extend((i, j + k) for k in range(n_tokens))
                    j += n_tokens
        self.index = torch.cat(src) if src else torch.zeros(0, T, dtype=torch.long)
        self.mask = self.index >= 0
        self.positions = torch.tensor(positions, dtype=torch.long).view(-1, 2)
        self._gather = self.index.clamp_min(0)
        self._means = torch.cat([torch.full((l.numel,), l.mean, dtype=torch.float64)
                                 for l in self.layers]) if self.layers else torch.zeros(0)
        self._stds = torch.cat([torch.full((l.numel,), l.std, dtype=torch.float64)
                                for l in self.layers]) if self.layers else torch.zeros(0)

    # ----------------------------------------------------------------------------- shapes
    @property
    def num_tokens(self) -> int:
        return int(self.index.shape[0])

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def generated_keys(self) -> list[str]:
        return [l.key for l in self.layers]

    # ----------------------------------------------------------------------------- transforms
    def flatten(self, sd: Mapping[str, Tensor]) -> Tensor:
        """The normalised generated values of one state dict as one float32 vector."""
        parts = []
        for layer in self.layers:
            if layer.key not in sd:
                raise KeyError(f"state dict has no key {layer.key!r} that the tokenizer expects")
            value = sd[layer.key]
            if list(value.shape) != layer.shape:
                raise ValueError(f"key {layer.key!r} has shape {list(value.shape)}, "
                                 f"the tokenizer expects {layer.shape}")
            x = self._forward_transform(layer.key, value.detach().double().reshape(-1))
            parts.append(x)
        flat = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)
        return ((flat - self._means) / self._stds).float()

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        """Inverse of :meth:`flatten`, plus the copied tensors: a complete state dict."""
        x = flat.detach().double() * self._stds + self._means
        out: dict[str, Tensor] = {}
        offset = 0
        generated = {}
        for layer in self.layers:
            v = x[offset:offset + layer.numel]
            offset += layer.numel
            if layer.log_transform:
                v = torch.exp(v)
            generated[layer.key] = v.reshape(layer.shape).to(_dtype(layer.dtype))
        for key in self.key_order:
            if key in generated:
                out[key] = generated[key]
            else:
                out[key] = self.copied[key].clone()
        return out

    def tokenize(self, sd: Mapping[str, Tensor]) -> Tensor:
        """One state dict -> tokens [L, T] (float32; padding is zero, see ``mask``)."""
        flat = self.flatten(sd)
        return flat[self._gather] * self.mask

    def tokens_to_flat(self, tokens: Tensor) -> Tensor:
        """Tokens [..., L, T] -> flat normalised vectors [..., num_values]; padding dropped."""
        lead = tokens.shape[:-2]
        t = tokens.reshape(*lead, -1)
        sel = self.index.reshape(-1)
        keep = sel >= 0
        flat = torch.empty(*lead, self.num_values, dtype=tokens.dtype, device=tokens.device)
        flat[..., sel[keep].to(tokens.device)] = t[..., keep.to(tokens.device)]
        return flat

    def detokenize(self, tokens: Tensor) -> dict[str, Tensor]:
        """Tokens [L, T] -> state dict with the original keys, shapes and dtypes."""
        if tuple(tokens.shape) != (self.num_tokens, self.token_size):
            raise ValueError(f"expected tokens of shape {(self.num_tokens, self.token_size)}, "
                             f"got {tuple(tokens.shape)}")
        return self.unflatten(self.tokens_to_flat(tokens.cpu()))

    # ----------------------------------------------------------------------------- persistence
    def to_config(self) -> dict:
        return {
            "token_size": self.token_size,
            "mode": self.mode,
            "key_order": self.key_order,
            "layers": [asdict(l) for l in self.layers],
            "copied": {k: {"shape": list(v.shape), "dtype": _dtype_name(v.dtype)}
                       for k, v in self.copied.items()},
        }

    def copied_tensors(self) -> dict[str, Tensor]:
        """The copied tensors under a ``copied.`` prefix, for saving beside model weights."""
        return {f"copied.{k}": v for k, v in self.copied.items()}

    @classmethod
    def from_config(cls, config: Mapping, tensors: Mapping[str, Tensor]) -> "Tokenizer":
        copied = {}
        for key, meta in config["copied"].items():
            name = f"copied.{key}"
            if name not in tensors:
                raise KeyError(f"saved generator lacks the copied tensor {key!r}")
            copied[key] = tensors[name].to(_dtype(meta["dtype"])).reshape(meta["shape"])
        layers = [LayerLayout(**l) for l in config["layers"]]
        return cls(config["token_size"], config["mode"], layers, copied, config["key_order"])
