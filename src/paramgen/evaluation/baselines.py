"""The two baselines a generator must beat (Zeng et al. 2026): noise-added checkpoints and
mixtures of two checkpoints, each scored like a generated model (metric, novelty, distance)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from paramgen.evaluation.analysis import add_noise, interpolate
from paramgen.evaluation.core import StateDict, load_into, predict_one, predictions, score
from paramgen.evaluation.novelty import Frontier, ParamSpace, novelty
from paramgen.evaluation.similarity import max_similarity, wrong_mask
from paramgen.evaluation.tables import Table, num, pct, summary

# Relative noise scales (noise std = scale × the tensor's own std). 0.01 leaves a trained small
# network's predictions practically unchanged (novelty ≈ 0); around 0.1-0.3 mistakes start to
# diverge; at 1.0 the noise is as large as the weights themselves and most networks are broken
# (robust ones, e.g. binary tasks, only at 2.0). The range therefore traces the whole
# accuracy-vs-novelty trade-off the generated models are compared against (p-diff Fig. 4,
# RPG Fig. 9, Zeng et al. Fig. 3).
DEFAULT_NOISE_SCALES = (0.01, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)
# Mixture weights of the interpolation baseline: (1 - alpha) a + alpha b. 0.5 is the midpoint
# (weight averaging); 0.25 stays nearer one parent, which is usually more accurate and less novel.
DEFAULT_MIX_ALPHAS = (0.25, 0.5)
DEFAULT_MIX_PAIRS = 20


@dataclass
class _Scored:
    """Per group (a noise scale or a mixture weight), per model: metric, max IoU, distance."""

    scores: list[list[float]]          # [group][model]
    similarities: list[list[float]]    # [group][model]: max IoU over all originals
    distances: list[list[float]] = field(default_factory=list)  # [group][model], relative L2

    name = "baseline"
    group_label = "group"

    @property
    def groups(self) -> list[float]:
        raise NotImplementedError

    @property
    def novelty(self) -> list[list[float]]:
        return [novelty(s) for s in self.similarities]

    def frontier(self) -> Frontier:
        """Best metric at each novelty over every model of every group."""
        nov = [v for row in self.novelty for v in row]
        return Frontier.from_points(self.name, nov, [s for row in self.scores for s in row])

    def table(self, metric: str = "accuracy") -> Table:
        """One row per group: the metric's mean and range, mean novelty and distance."""
        rows = []
        dists = self.distances or [[] for _ in self.groups]
        for g, sc, nv, di in zip(self.groups, self.scores, self.novelty, dists):
            a, b, c = summary(sc), summary(nv), summary(di)
            rows.append([f"{g:g}", str(len(sc)), pct(a["mean"]), pct(a["min"]), pct(a["best"]),
                         num(b["mean"]), num(b["best"]), num(c["mean"], 4)])
        label = metric.replace("_", " ")
        return Table(headers=[self.group_label, "n", f"mean {label} (%)", "min (%)", "max (%)",
                              "mean novelty", "max novelty", "mean distance"], rows=rows,
                     title=self.title)

    title = ""

    def own_fields(self) -> dict:
        """What this baseline adds to :meth:`to_dict` (its groups and how its models were made)."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        return {**self.own_fields(), "scores": self.scores, "similarities": self.similarities,
                "novelty": self.novelty, "distances": self.distances}


@dataclass
class NoiseBaseline(_Scored):
    """Metric, max similarity and distance of noise-added copies of the originals, per scale."""

    scales: list[float] = field(default_factory=list)
    sources: list[int] = field(default_factory=list)  # index of the original each copy came from

    name = "noise"
    group_label = "noise scale"
    title = "noise-added originals (noise std = scale x per-tensor std)"

    @property
    def groups(self) -> list[float]:
        return self.scales

    def own_fields(self) -> dict:
        return {"scales": self.scales, "sources": self.sources}


@dataclass
class MixtureBaseline(_Scored):
    """Metric, max similarity and distance of (1 - alpha) a + alpha b for pairs of originals."""

    alphas: list[float] = field(default_factory=list)
    pairs: list[tuple[int, int]] = field(default_factory=list)

    name = "mixture"
    group_label = "alpha"
    title = "mixtures of two originals ((1 - alpha) a + alpha b)"

    @property
    def groups(self) -> list[float]:
        return self.alphas

    def own_fields(self) -> dict:
        return {"alphas": self.alphas, "pairs": [list(p) for p in self.pairs]}


def _score_models(models: list[StateDict], labels: list[str], model: nn.Module, x: Tensor,
                  y: Tensor, metric: str, wrong_refs: Tensor, space: ParamSpace | None,
                  batch_size: int) -> tuple[list[float], list[float], list[float]]:
    preds = []
    for sd, label in zip(models, labels):
        load_into(model, sd, label)
        preds.append(predict_one(model, x, batch_size))
    p = torch.stack(preds)
    dists = space.nearest(models) if space is not None else []
    return ([float(v) for v in score(p, y, metric)], max_similarity(wrong_mask(p, y), wrong_refs),
            dists)


def _spaced(n: int, count: int | None) -> list[int]:
    count = n if count is None else max(1, min(count, n))
    return sorted({round(i * (n - 1) / max(count - 1, 1)) for i in range(count)})


def noise_baseline(originals: Sequence[StateDict], model: nn.Module, x: Tensor, y: Tensor,
                   scales: Sequence[float] = DEFAULT_NOISE_SCALES, metric: str = "accuracy",
                   per_scale: int | None = 10, seed: int = 0,
                   original_preds: Tensor | None = None, batch_size: int = 1024,
                   space: ParamSpace | None = None) -> NoiseBaseline:
    """Noise-added copies of the originals at each scale → their metric, similarity, distance.

    The similarity of a noisy copy is its max IoU over *all* originals, its own source included:
    the question is how far noise alone moves a model from the training set, so scale 0 gives
    exactly 1 (novelty 0). `per_scale` caps the copies per scale (evenly spaced originals) so a
    collection of hundreds of checkpoints stays cheap; None uses every original. Only the model's
    parameters get noise (buffers such as BatchNorm statistics are kept). `space` (the
    originals' ParamSpace) adds each copy's distance to its nearest original.
    """
    if not originals:
        raise ValueError("noise baseline: no original checkpoints to add noise to")
    sources = _spaced(len(originals), per_scale)
    if original_preds is None:
        original_preds = predictions(originals, model, x, batch_size)
    wrong_refs = wrong_mask(original_preds, y)
    param_keys = {k for k, _ in model.named_parameters()}
    gen = torch.Generator().manual_seed(seed)
    out = NoiseBaseline(scores=[], similarities=[], distances=[],
                        scales=[float(s) for s in scales], sources=list(sources))
    for s in scales:
        noisy = [add_noise(originals[i], float(s), gen, keys=param_keys) for i in sources]
        sc, si, di = _score_models(noisy, [f"original #{i} + noise {s:g}" for i in sources],
                                   model, x, y, metric, wrong_refs, space, batch_size)
        out.scores.append(sc)
        out.similarities.append(si)
        out.distances.append(di)
    if space is None:
        out.distances = []
    return out


def choose_pairs(runs: Sequence[Any] | None, n: int, count: int = DEFAULT_MIX_PAIRS,
                 seed: int = 0) -> list[tuple[int, int]]:
    """Up to `count` distinct pairs of originals, seeded; half within a run, half across runs.

    Within a run two checkpoints usually share a basin and their mixture stays accurate; across
    runs it usually does not (a loss barrier). A frontier built from one kind only would
    flatter the generator, so both are drawn whenever the collection has both.
    """
    if n < 2:
        return []
    rng = random.Random(seed)
    all_pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    if runs is None or len(set(runs)) < 2:
        rng.shuffle(all_pairs)
        return sorted(all_pairs[:count])
    same = [p for p in all_pairs if runs[p[0]] == runs[p[1]]]
    cross = [p for p in all_pairs if runs[p[0]] != runs[p[1]]]
    rng.shuffle(same)
    rng.shuffle(cross)
    half = count // 2
    take_same = same[:max(half, count - len(cross))]
    take_cross = cross[:count - len(take_same)]
    return sorted(take_same + take_cross)


def mixture_baseline(originals: Sequence[StateDict], model: nn.Module, x: Tensor, y: Tensor,
                     alphas: Sequence[float] = DEFAULT_MIX_ALPHAS, metric: str = "accuracy",
                     pairs: int = DEFAULT_MIX_PAIRS, runs: Sequence[Any] | None = None,
                     seed: int = 0, original_preds: Tensor | None = None,
                     batch_size: int = 1024, space: ParamSpace | None = None
                     ) -> MixtureBaseline:
    """(1 - alpha) a + alpha b for `pairs` seeded pairs of originals, at each alpha.

    Every floating tensor is mixed (weights and normalisation statistics alike); integer buffers
    come from a. Scored like a generated model: metric, max IoU over all originals, distance.
    """
    for a in alphas:
        if not (math.isfinite(a) and 0 <= a <= 1):
            raise ValueError(f"mixture alpha {a!r}: expected a number in [0, 1]")
    chosen = choose_pairs(runs, len(originals), pairs, seed)
    out = MixtureBaseline(scores=[], similarities=[], distances=[],
                          alphas=[float(a) for a in alphas], pairs=chosen)
    if not chosen:
        return out
    if original_preds is None:
        original_preds = predictions(originals, model, x, batch_size)
    wrong_refs = wrong_mask(original_preds, y)
    for a in alphas:
        mixed = [interpolate(originals[i], originals[j], float(a)) for i, j in chosen]
        sc, si, di = _score_models(mixed, [f"mixture of #{i} and #{j}, alpha {a:g}"
                                           for i, j in chosen],
                                   model, x, y, metric, wrong_refs, space, batch_size)
        out.scores.append(sc)
        out.similarities.append(si)
        out.distances.append(di)
    if space is None:
        out.distances = []
    return out
