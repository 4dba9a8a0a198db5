"""What a layout outside the zoo borrows from it: normalisation, chunk positions, coordinates.

A model of an unseen depth (or an architecture seen only on another dataset) usually shares
most tensor shapes with a collection of the zoo: its stem and head, and blocks that differ only
in how many there are. Its tensors are mapped onto one **source** collection by role and by
block position: a target shallower than the source keeps the source's first blocks, a deeper
one spreads them over its depth (block i of D <- block round(i (S-1)/(D-1)) of the source's S);
a key without a numeric index maps to itself. A mapped tensor of the
same shape takes the source tensor's normalisation, its chunk positions in the VQ-VAE (so it is
decoded as the source's chunks are) and its per-coordinate statistics (so a sample lies around
one basin of the source, relocated block by block); every other tensor is chunked with the
statistics of the zoo's closest tensor (chunking.chunker_for_unseen) and decoded from the
position-free context. One source for all tensors: tensors taken from independently trained
models would not fit together (their hidden units are in unrelated orders).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import Tensor

from paramgen.methods.igpg.chunking import chunker_for_unseen
from paramgen.methods.igpg.coordinates import CoordinateStats
from paramgen.tokenize import Tokenizer, is_generated

_BLOCK = re.compile(r"^(.*?)\.(\d+)\.(.+)$")


def split_block(key: str) -> tuple[str, int, str] | None:
    """``blocks.3.fc1.weight`` -> ("blocks", 3, "fc1.weight"); None without a numeric index."""
    m = _BLOCK.match(key)
    return (m[1], int(m[2]), m[3]) if m else None


def depths(keys: Sequence[str]) -> dict[str, int]:
    """How many blocks each indexed container holds: {"blocks": 4}."""
    seen: dict[str, set[int]] = {}
    for key in keys:
        p = split_block(key)
        if p is not None:
            seen.setdefault(p[0], set()).add(p[1])
    return {prefix: max(idx) + 1 for prefix, idx in seen.items()}


def map_key(key: str, target_depths: Mapping[str, int], source_depths: Mapping[str, int]) -> str:
    """The source key at the same role and relative block position."""
    p = split_block(key)
    if p is None or p[0] not in source_depths:
        return key
    prefix, i, rest = p
    d, s = target_depths.get(prefix, i + 1), source_depths[prefix]
    # Chosen on the digits collections of the resmlp zoo (run means relocated,
    # benchmarks/igpg_block_rules.py): a shallower target keeps the source's first blocks
    # (92.4% on average, 89.8% by relative position); a deeper one spreads the source's blocks
    # over its depth (77.0%, 74.8% repeating the last block).
    j = i if d <= s else round(i * (s - 1) / (d - 1))
    return f"{prefix}.{min(j, s - 1)}.{rest}"


@dataclass
class Borrowed:
    tokenizer: Tokenizer
    position_ids: Tensor | None       # [C] the source's chunk position ids, -1 where none
    coords: CoordinateStats | None    # [G, C, K] from the source's groups
    source: int | None                # index of the source collection in the zoo
    matched: int                      # tensors mapped onto the source


def borrow(like: Mapping[str, Tensor], entries: Sequence, dataset: str | None,
           chunk_size: int, vectorization: str) -> Borrowed:
    """Chunker, position ids and coordinate statistics for a layout outside the zoo.
    ``entries``: the zoo (objects with ``tokenizer``, ``dataset``, ``position_offset``,
    ``coords``); the source is the one matching most tensors by shape, then the same dataset,
    then one with as many tensors or more, then the nearest tensor count."""
    keys = [k for k, v in like.items() if is_generated(v)]
    target_depths = depths(keys)
    best, best_score, best_map = None, None, {}
    for i, e in enumerate(entries):
        layers = {l.key: l for l in e.tokenizer.layers}
        mapping = {}
        for k in keys:
            src = map_key(k, target_depths, depths(list(layers)))
            if src in layers and layers[src].shape == list(like[k].shape):
                mapping[k] = layers[src]
        # a source at least as deep drops blocks rather than repeating them (digits
        # collections of the resmlp zoo relocated: 92.4% from deeper, 77.0% from shallower)
        score = (len(mapping), e.dataset == dataset, len(layers) >= len(keys),
                 -abs(len(layers) - len(keys)))
        if best_score is None or score > best_score:
            best, best_score, best_map = i, score, mapping
    refs = [e.tokenizer for e in entries]
    if vectorization != "layer" or not best_map:
        # chunks of "architecture" vectorisation span tensors: no row-wise borrowing
        return Borrowed(chunker_for_unseen(like, chunk_size, vectorization, refs), None, None,
                        None, 0)
    tokenizer = chunker_for_unseen(like, chunk_size, vectorization, refs, sources=best_map)
    src = entries[best]
    src_rows = _rows(src.tokenizer)
    ids = torch.full((tokenizer.num_tokens,), -1, dtype=torch.long)
    coords = None
    if src.coords is not None:
        G = src.coords.groups
        coords = CoordinateStats(torch.zeros(G, tokenizer.num_tokens, chunk_size),
                                 torch.ones(G, tokenizer.num_tokens, chunk_size),
                                 None if src.coords.residual is None else
                                 torch.zeros(G, tokenizer.num_tokens, chunk_size))
    for t_rows, layer in zip(_rows(tokenizer), tokenizer.layers):
        ref = best_map.get(layer.key)
        if ref is None:
            continue
        s_rows = src_rows[src.tokenizer.layers.index(ref)]
        ids[t_rows] = src.position_offset + s_rows
        if coords is not None:
            coords.mean[:, t_rows] = src.coords.mean[:, s_rows]
            coords.std[:, t_rows] = src.coords.std[:, s_rows]
            if coords.residual is not None:
                coords.residual[:, t_rows] = src.coords.residual[:, s_rows]
    return Borrowed(tokenizer, ids, coords, best, len(best_map))


def _rows(tokenizer: Tokenizer) -> list[Tensor]:
    """The chunk rows of every layer (layer vectorisation: contiguous, in order)."""
    layer_of = tokenizer.positions[:, 0]
    return [torch.nonzero(layer_of == i).flatten() for i in range(len(tokenizer.layers))]
