"""Novelty after Zeng et al. (2026): behavioural novelty, parameter-space distance, frontiers.

Zeng, Yin, Xu, Liu ("Generative Modeling of Weights: Generalization or Memorization?") ask of
every generated model two questions: does it behave like a training checkpoint (novelty = 1 - its
max IoU of wrong test predictions over the checkpoints), and how far is it from the nearest
checkpoint in parameter space. A generator is only worth more than its training set when its
models are *both* accurate and novel beyond what two trivial baselines reach: checkpoints with
noise added, and mixtures of two checkpoints. A baseline's **frontier** is the best accuracy it
reaches at each novelty; a model beats the baseline when it lies strictly above that frontier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from paramgen.evaluation.core import StateDict

# A generated model only counts as beating the baselines when its accuracy is within this many
# points of the originals' mean: a novel but clearly worse model is not what a generator is for.
BEAT_MARGIN = 0.02
# Originals compared per block when measuring distances: bounds the temporary [block, P] copy.
_BLOCK = 64


def novelty(max_similarity: Sequence[float]) -> list[float]:
    """1 - max IoU of wrong predictions, per model (NaN stays NaN)."""
    return [1.0 - s if s == s else math.nan for s in max_similarity]


class ParamSpace:
    """The originals as flat parameter vectors, to measure nearest-neighbour distances.

    Every floating tensor of the state dict counts (weights, biases, normalisation statistics);
    integer buffers do not. Distances are divided by the originals' mean L2 norm, so 0.01 reads
    as "1% of a checkpoint's size away" whatever the model's size.
    """

    def __init__(self, originals: Sequence[StateDict]) -> None:
        if not originals:
            raise ValueError("parameter distances need at least one original checkpoint")
        self.keys = [k for k, v in originals[0].items() if v.is_floating_point()]
        if not self.keys:
            raise ValueError("the checkpoints hold no floating-point tensor to measure")
        self.matrix = self.flatten(originals)
        norms = self.matrix.to(torch.float64).norm(dim=1)
        self.scale = float(norms.mean()) or 1.0

    def flatten(self, sds: Sequence[StateDict]) -> Tensor:
        """[M, P] float32: every model's floating tensors, concatenated in key order."""
        rows = [torch.cat([sd[k].detach().reshape(-1).float() for k in self.keys]) for sd in sds]
        return torch.stack(rows) if rows else torch.empty(0, 0)

    def _nearest(self, vec: Tensor, skip: int | None = None) -> float:
        best = math.inf
        for start in range(0, len(self.matrix), _BLOCK):
            block = self.matrix[start:start + _BLOCK]
            d = (block.to(torch.float64) - vec.to(torch.float64)).norm(dim=1)
            if skip is not None and start <= skip < start + len(block):
                d[skip - start] = math.inf
            if len(d):
                best = min(best, float(d.min()))
        return best / self.scale if math.isfinite(best) else math.nan

    def nearest(self, sds: Sequence[StateDict]) -> list[float]:
        """Each model's distance to its nearest original (relative to the originals' norm)."""
        return [self._nearest(v) for v in self.flatten(sds)]

    def nearest_among_originals(self) -> list[float]:
        """Each original's distance to the nearest *other* original (NaN with one original)."""
        return [self._nearest(v, skip=i) for i, v in enumerate(self.matrix)]


@dataclass
class Frontier:
    """Best accuracy a baseline reaches at each novelty: its Pareto staircase.

    `novelty` ascending, `score` descending: point i is the most accurate baseline model with
    novelty >= novelty[i]. A model beats the baseline when no baseline model is at least as
    novel and at least as accurate.
    """

    name: str
    novelty: list[float]
    score: list[float]

    @classmethod
    def from_points(cls, name: str, novelty: Sequence[float], score: Sequence[float]
                    ) -> "Frontier":
        pts = sorted(((v, s) for v, s in zip(novelty, score) if v == v and s == s),
                     key=lambda p: (-p[0], -p[1]))
        keep: list[tuple[float, float]] = []
        for v, s in pts:  # from the most novel down: keep each point better than all beyond it
            if not keep or s > keep[-1][1]:
                keep.append((v, s))
        keep.reverse()
        return cls(name, [v for v, _ in keep], [s for _, s in keep])

    def best_at(self, novelty: float) -> float:
        """Highest baseline score among models at least this novel (-inf where none is)."""
        best = -math.inf
        for v, s in zip(self.novelty, self.score):
            if v >= novelty - 1e-12:
                best = max(best, s)
        return best

    def beaten_by(self, novelty: float, score: float) -> bool:
        return novelty == novelty and score > self.best_at(novelty)

    def to_dict(self) -> dict:
        return {"name": self.name, "novelty": self.novelty, "score": self.score}


def beats(novelty: Sequence[float], scores: Sequence[float], frontiers: Sequence[Frontier],
          reference_mean: float, margin: float = BEAT_MARGIN) -> list[bool]:
    """Per model: above every frontier at its novelty and within `margin` of `reference_mean`."""
    return [all(f.beaten_by(v, s) for f in frontiers) and s >= reference_mean - margin - 1e-12
            for v, s in zip(novelty, scores)]
