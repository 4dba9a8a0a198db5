"""Per-coordinate standardisation of a collection's chunks, one group of checkpoints at a time.

Why (docs/igpg.md, measured on a residual-MLP zoo of 3 runs x 5 checkpoints per collection):
after the per-tensor normalisation of paramgen.tokenize, the checkpoints of one run differ by
about 1% of a tensor's spread and those of different runs by far more, so the VQ-VAE gave every
checkpoint of a run the same tokens (one token sequence per run) and the prior, drawing each
chunk from a different run, wrote models of no basin. Here every chunk value is standardised by
its mean and std over the checkpoints of its **group** (a training run when every run has two
or more checkpoints, the whole collection when it is one run; none when some of several runs
have a single checkpoint): the VQ-VAE and the prior then see how the
checkpoints of a basin differ, at unit scale, and a sample is decoded with one group's
statistics, so all its chunks come from one basin. The statistics cost two values per parameter
per group.

What the VQ-VAE cannot represent of a checkpoint (measured: within a run the checkpoints differ
by noise-like steps, and two tokens per chunk of 64 values reconstruct about 15% of that
variance) is kept as a third statistic, the per-coordinate std of the training reconstructions'
error in each group; sampling adds that much Gaussian noise to the decoded chunk
(``residual_noise`` times it; 0: the VQ-VAE's output as it is), the decoder's Gaussian
observation model rather than its mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

STD_FLOOR = 1e-6    # a coordinate constant within its group keeps its mean (std 0 -> floor)
# A collection labelled as one run is split into basins only where its checkpoints fall apart
# this clearly: a link of the minimum spanning tree this many times the median link is cut.
# Measured on the resmlp zoo: checkpoints of one run ~1% of a tensor's spread apart, of
# different runs 100x that; links of one run's continued training differ by far less than 5x.
BASIN_LINK_RATIO = 5.0


@dataclass
class CoordinateStats:
    """Mean and std [G, C, K] of every chunk value over each of G groups of checkpoints."""

    mean: Tensor
    std: Tensor
    residual: Tensor | None = None   # [G, C, K] std of the VQ-VAE's error, standardised units

    @property
    def groups(self) -> int:
        return int(self.mean.shape[0])

    def standardise(self, chunks: Tensor, group: int) -> Tensor:
        return (chunks - self.mean[group]) / self.std[group]

    def restore(self, chunks: Tensor, group: int, start: int = 0,
                noise: Tensor | None = None) -> Tensor:
        """Standardised chunks (rows ``start:start + len(chunks)``) -> normalised chunks;
        ``noise`` (standard normal, their shape, scaled) times the residual std is added."""
        end = start + chunks.shape[0]
        m, s = self.mean[group, start:end], self.std[group, start:end]
        if noise is not None and self.residual is not None:
            chunks = chunks + noise.to(chunks) * self.residual[group, start:end].to(chunks)
        return chunks * s.to(chunks) + m.to(chunks)

    def fit_residual(self, chunks: Tensor, decoded: Tensor, runs: Sequence[int]) -> None:
        """The per-coordinate std of ``chunks - decoded`` ([N, C, K], standardised) per group
        (padding values are dropped when a chunk is decoded, whatever they are)."""
        err = (chunks.double() - decoded.double()) ** 2
        self.residual = torch.stack([err[idx].mean(0).sqrt()
                                     for idx in groups_of(runs) or []]).float()

    def nearest_group(self, chunks: Tensor) -> int:
        """The group whose mean is closest to these (normalised) chunks."""
        d = ((self.mean - chunks[None]) ** 2).flatten(1).sum(1)
        return int(d.argmin())


def groups_of(runs: Sequence[int]) -> list[list[int]] | None:
    """Checkpoint indices per group: one per run when every run has >= 2 checkpoints; one group
    of all for a single run; None (no standardisation) when some of several runs have a single
    checkpoint: a lone checkpoint has no spread of its own, and pooling runs pools basins,
    whose mean is no model (docs/igpg.md, table (a2): 12-22% where the runs gave 56-97%)."""
    by_run: dict[int, list[int]] = {}
    for i, r in enumerate(runs):
        by_run.setdefault(int(r), []).append(i)
    if len(by_run) == 1:
        return [list(range(len(runs)))]
    if all(len(v) >= 2 for v in by_run.values()):
        return [by_run[r] for r in sorted(by_run)]
    return None


def infer_basins(chunks: Tensor, mask: Tensor) -> list[int] | None:
    """Run labels for a collection whose checkpoints all carry one run label (a user's own
    state dicts, loaded without runs) but fall into clearly separated groups, as independent
    training runs do; None when they do not (one basin, or a group of one checkpoint, which has
    no spread of its own). Pooling basins breaks every sample (docs/igpg.md, table (a2)), so
    this is checked rather than assumed. Single linkage: the minimum spanning tree of the
    checkpoints' distances, cut at links over ``BASIN_LINK_RATIO`` times its median link."""
    n = chunks.shape[0]
    if n < 4:
        return None
    x = torch.where(mask, chunks, torch.zeros_like(chunks)).reshape(n, -1).double()
    sq = (x * x).sum(1)
    d = (sq[:, None] + sq[None, :] - 2 * x @ x.T).clamp_min(0).sqrt()
    # Prim's algorithm: n is a collection's checkpoint count, a few hundred at most. Each
    # checkpoint joins the tree by its shortest link to it; parent[j] is the other end.
    in_tree = torch.zeros(n, dtype=torch.bool)
    in_tree[0] = True
    best, parent = d[0].clone(), torch.zeros(n, dtype=torch.long)
    order, length = [], torch.zeros(n, dtype=torch.float64)
    for _ in range(n - 1):
        j = int(best.masked_fill(in_tree, float("inf")).argmin())
        in_tree[j] = True
        order.append(j)
        length[j] = best[j]
        closer = (d[j] < best) & ~in_tree
        best = torch.where(closer, d[j], best)
        parent = torch.where(closer, torch.full_like(parent, j), parent)
    median = float(length[order].sort().values[len(order) // 2])  # the upper median
    if median <= 0:
        return None
    # the groups: the tree with its long links cut; a parent joined before its child, so one
    # pass in joining order labels every checkpoint with its group's first member
    labels = list(range(n))
    for j in order:
        if length[j] <= BASIN_LINK_RATIO * median:
            labels[j] = labels[int(parent[j])]
    names = {r: k for k, r in enumerate(dict.fromkeys(labels))}
    out = [names[r] for r in labels]
    if len(names) == 1 or min(out.count(k) for k in names.values()) < 2:
        return None
    return out


def fit_coordinates(chunks: Tensor, mask: Tensor, runs: Sequence[int]) -> CoordinateStats | None:
    """Statistics of chunks [N, C, K] (``mask`` [C, K] marks real values; padding keeps mean 0,
    std 1). None for a single checkpoint: nothing varies."""
    groups = groups_of(runs)
    if chunks.shape[0] < 2 or groups is None:
        return None
    means, stds = [], []
    for idx in groups:
        x = chunks[idx].double()
        m = x.mean(0)
        s = x.std(0, unbiased=False).clamp_min(STD_FLOOR)
        means.append(torch.where(mask, m, torch.zeros_like(m)).float())
        stds.append(torch.where(mask, s, torch.ones_like(s)).float())
    return CoordinateStats(torch.stack(means), torch.stack(stds))


def standardise_collection(chunks: Tensor, stats: CoordinateStats | None, runs: Sequence[int]
                           ) -> Tensor:
    """Every checkpoint's chunks standardised with its own group's statistics."""
    if stats is None:
        return chunks
    out = chunks.clone()
    for g, idx in enumerate(groups_of(runs) or []):
        out[idx] = stats.standardise(chunks[idx], g)
    return out
