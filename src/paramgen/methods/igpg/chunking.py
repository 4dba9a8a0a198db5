"""Fixed-size chunks of normalised parameters (IGPG §2.1-2.2), built on paramgen.tokenize.

Each tensor is normalised by its mean and std over its collection (paramgen.tokenize does this,
with the log transform for BatchNorm variances), then:

* layer-wise vectorisation (``"layer"``): each tensor is flattened and cut into chunks of K
  values, the last one padded; a chunk never spans two tensors;
* architecture-wise vectorisation (``"architecture"``): the flattened tensors are concatenated in
  the state dict's order and the whole vector is cut, padded once at the end.

Padding is masked out of the VQ-VAE's reconstruction loss. A chunker is fitted per collection
(per architecture and dataset); for a layout no collection had, :func:`chunker_for_unseen`
borrows the statistics of the closest tensor the zoo did have.
"""

from __future__ import annotations

import hashlib
import math
from typing import Iterable, Mapping, Sequence

import torch
from torch import Tensor

from paramgen.tokenize import LOG_TRANSFORM_SUFFIXES, LayerLayout, Tokenizer, is_generated

_MODES = {"layer": "layer", "architecture": "flat"}


def check_single_dtype(sd: Mapping[str, Tensor], where: str) -> None:
    """IGPG generates every floating tensor of a model in one dtype: mixed dtypes are refused."""
    dtypes: dict[str, list[str]] = {}
    for key, value in sd.items():
        if is_generated(value):
            dtypes.setdefault(str(value.dtype).removeprefix("torch."), []).append(key)
    if len(dtypes) > 1:
        shown = "; ".join(f"{dt}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                          for dt, keys in sorted(dtypes.items()))
        raise ValueError(f"{where} mixes floating dtypes ({shown}); IGPG needs one dtype per "
                         "model: cast the state dict (e.g. {k: v.float() ...}) first")


def layout_signature(sd: Mapping[str, Tensor]) -> str:
    """A short hash of the keys, shapes and dtypes: equal signatures, interchangeable layouts."""
    h = hashlib.sha256()
    for key, value in sd.items():
        h.update(f"{key}:{tuple(value.shape)}:{value.dtype};".encode())
    return h.hexdigest()[:16]


def fit_chunker(state_dicts: Iterable[Mapping[str, Tensor]], chunk_size: int,
                vectorization: str) -> Tokenizer:
    """Normalisation statistics over one collection, and its chunk layout."""
    return Tokenizer.fit(state_dicts, chunk_size, _MODES[vectorization])


def _closest(layer_key: str, shape: Sequence[int], references: Sequence[Tokenizer]
             ) -> LayerLayout | None:
    """The zoo's tensor most like this one: same name and rank first, then same leaf name and
    rank; among those the nearest in size."""
    leaf = layer_key.rsplit(".", 1)[-1]
    numel = max(math.prod(shape), 1)
    for match in (lambda l: l.key == layer_key,
                  lambda l: l.key.rsplit(".", 1)[-1] == leaf):
        found = [l for tk in references for l in tk.layers
                 if match(l) and len(l.shape) == len(shape)]
        if found:
            return min(found, key=lambda l: abs(math.log(max(l.numel, 1) / numel)))
    return None


def chunker_for_unseen(like: Mapping[str, Tensor], chunk_size: int, vectorization: str,
                       references: Sequence[Tokenizer],
                       sources: Mapping[str, LayerLayout] | None = None) -> Tokenizer:
    """A chunker for a layout no collection had: ``like``'s keys, shapes and dtypes, each
    tensor's statistics borrowed from the closest tensor of the zoo (else ``like``'s own), and
    ``like``'s copied (integer / scalar) tensors; ``sources`` names the zoo tensor to borrow
    from for some keys (transfer.borrow's mapping). Every floating tensor is generated: equal
    values in one (freshly initialised) ``like`` say nothing about weight tying."""
    mode = _MODES[vectorization]
    layers, copied = [], {}
    for key, value in like.items():
        if not is_generated(value):
            copied[key] = value.detach().clone()
            continue
        ref = (sources or {}).get(key) or _closest(key, value.shape, references)
        if ref is not None:
            mean, std = ref.mean, ref.std
        else:
            x = Tokenizer._forward_transform(key, value.detach().double())
            mean, std = float(x.mean()), float(x.std(unbiased=False)) if x.numel() > 1 else 0.0
            std = std if std > 1e-12 else 1.0
        layers.append(LayerLayout(key=key, shape=list(value.shape),
                                  dtype=str(value.dtype).removeprefix("torch."),
                                  log_transform=key.endswith(LOG_TRANSFORM_SUFFIXES),
                                  mean=mean, std=std, chunks=Tokenizer._chunks(value.shape, mode)))
    return Tokenizer(chunk_size, mode, layers, copied, list(like))


def chunk_tensor(tokenizer: Tokenizer, state_dicts: Iterable[Mapping[str, Tensor]]) -> Tensor:
    """Chunks [N, C, K] of a collection (padding zero; ``tokenizer.mask`` says where)."""
    return torch.stack([tokenizer.tokenize(sd) for sd in state_dicts])


def chunk_slots(tokenizer: Tokenizer, tokens_per_chunk: int) -> Tensor:
    """Where each codebook token sits: [C * l, 3] of (tensor index, chunk in tensor, token in
    chunk), the prior's per-token position features."""
    pos = tokenizer.positions
    l = tokens_per_chunk
    sub = torch.arange(l).repeat(pos.shape[0])
    return torch.cat([pos.repeat_interleave(l, 0), sub[:, None]], 1)
