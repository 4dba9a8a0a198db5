"""Parameter-space analyses: noise-added baselines, linear mode connectivity and PCA."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch
from torch import Tensor, nn

from paramgen.evaluation.core import StateDict, predict_one, predictions, score, load_into
from paramgen.evaluation.similarity import max_similarity, wrong_mask
from paramgen.evaluation.tables import Table, num, pct, summary

# Relative noise scales (noise std = scale × the tensor's own std). 0.01 leaves a trained small
# network's predictions practically unchanged (similarity ≈ 1); around 0.1-0.3 mistakes start to
# diverge; at 1.0 the noise is as large as the weights themselves and most networks are broken
# (robust ones, e.g. binary tasks, only at 2.0). The range therefore traces the whole
# accuracy-vs-similarity trade-off the generated models are compared against (p-diff Fig. 4,
# RPG Fig. 9).
DEFAULT_NOISE_SCALES = (0.01, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)


def add_noise(sd: StateDict, scale: float, generator: torch.Generator | None = None,
              keys: Iterable[str] | None = None) -> dict[str, Tensor]:
    """A copy of `sd` with Gaussian noise of std `scale × std(tensor)` added per float tensor.

    Relative noise makes one scale mean the same perturbation for a conv kernel and a bias whose
    values differ by orders of magnitude. Integer buffers (num_batches_tracked) are copied. When
    `keys` is given only those tensors get noise — used to leave BatchNorm running statistics
    alone, which are data statistics rather than learned weights (noise could even make
    running_var negative). A constant tensor (std 0) gets noise relative to its RMS instead, so
    it is not silently skipped.
    """
    if scale < 0 or not math.isfinite(scale):
        raise ValueError(f"noise scale {scale!r}: expected a finite number >= 0")
    chosen = set(sd) if keys is None else set(keys)
    out: dict[str, Tensor] = {}
    for k, v in sd.items():
        if k not in chosen or not v.is_floating_point() or scale == 0:
            out[k] = v.clone()
            continue
        ref = v.detach().to(torch.float64)
        spread = float(ref.std()) if ref.numel() > 1 else 0.0
        if not spread > 0:
            spread = float(ref.pow(2).mean().sqrt())
        noise = torch.randn(v.shape, generator=generator, dtype=torch.float64) * (scale * spread)
        out[k] = (ref + noise).to(v.dtype)
    return out


@dataclass
class NoiseBaseline:
    """Metric and max similarity of noise-added copies of the originals, per noise scale."""

    scales: list[float]
    scores: list[list[float]]          # [scale][copy]
    similarities: list[list[float]]    # [scale][copy]: max IoU over all originals
    sources: list[int] = field(default_factory=list)  # index of the original each copy came from

    def table(self, metric: str = "accuracy") -> Table:
        """One row per scale: mean and range of the metric and of the max similarity."""
        rows = []
        for s, sc, si in zip(self.scales, self.scores, self.similarities):
            a, b = summary(sc), summary(si)
            rows.append([f"{s:g}", str(len(sc)), pct(a["mean"]), pct(a["min"]), pct(a["best"]),
                         num(b["mean"]), num(b["min"]), num(b["best"])])
        label = metric.replace("_", " ")
        return Table(headers=["noise scale", "n", f"mean {label} (%)", "min (%)", "max (%)",
                              "mean max-sim", "min", "max"], rows=rows,
                     title="noise-added originals (noise std = scale x per-tensor std)")

    def to_dict(self) -> dict:
        return {"scales": self.scales, "scores": self.scores, "similarities": self.similarities,
                "sources": self.sources}


def noise_baseline(originals: Sequence[StateDict], model: nn.Module, x: Tensor, y: Tensor,
                   scales: Sequence[float] = DEFAULT_NOISE_SCALES, metric: str = "accuracy",
                   per_scale: int | None = 10, seed: int = 0,
                   original_preds: Tensor | None = None, batch_size: int = 1024
                   ) -> NoiseBaseline:
    """Noise-added copies of the originals at each scale → their metric and max similarity.

    The similarity of a noisy copy is its max IoU over *all* originals, its own source included:
    the question is how far noise alone moves a model from the training set, so scale 0 gives
    exactly 1. `per_scale` caps the copies per scale (evenly spaced originals) so evaluating a
    collection of hundreds of checkpoints stays cheap; None uses every original. Only the model's
    parameters get noise (buffers such as BatchNorm statistics are kept).
    """
    if not originals:
        raise ValueError("noise baseline: no original checkpoints to add noise to")
    n = len(originals)
    count = n if per_scale is None else max(1, min(per_scale, n))
    sources = sorted({round(i * (n - 1) / max(count - 1, 1)) for i in range(count)})
    if original_preds is None:
        original_preds = predictions(originals, model, x, batch_size)
    wrong_refs = wrong_mask(original_preds, y)
    param_keys = {k for k, _ in model.named_parameters()}
    gen = torch.Generator().manual_seed(seed)
    all_scores, all_sims = [], []
    for s in scales:
        noisy_preds = []
        for i in sources:
            load_into(model, add_noise(originals[i], float(s), gen, keys=param_keys),
                      f"original #{i} + noise {s:g}")
            noisy_preds.append(predict_one(model, x, batch_size))
        p = torch.stack(noisy_preds)
        all_scores.append([float(v) for v in score(p, y, metric)])
        all_sims.append(max_similarity(wrong_mask(p, y), wrong_refs))
    return NoiseBaseline([float(s) for s in scales], all_scores, all_sims, list(sources))


def interpolate(sd_a: StateDict, sd_b: StateDict, alpha: float) -> dict[str, Tensor]:
    """(1-α)·a + α·b for float tensors; integer buffers are copied from a (no half counts)."""
    if set(sd_a) != set(sd_b):
        diff = sorted(set(sd_a) ^ set(sd_b))
        raise ValueError(f"cannot interpolate state dicts with different keys, e.g. {diff[0]!r}")
    out = {}
    for k, a in sd_a.items():
        b = sd_b[k]
        if a.shape != b.shape:
            raise ValueError(f"cannot interpolate key {k!r}: shapes {tuple(a.shape)} vs "
                             f"{tuple(b.shape)}")
        if a.is_floating_point():
            out[k] = ((1 - alpha) * a.to(torch.float64) + alpha * b.to(torch.float64)).to(a.dtype)
        else:
            out[k] = a.clone()
    return out


def lmc(sd_a: StateDict, sd_b: StateDict, model: nn.Module, x: Tensor, y: Tensor,
        points: int = 11, metric: str = "accuracy", batch_size: int = 1024) -> dict:
    """Linear mode connectivity: the metric along the straight line from a (α=0) to b (α=1).

    A flat curve means both models sit in one basin; a dip in the middle ("barrier") means they
    are in different basins — which is what distinct permutation states should produce
    (RPG appendix C.1, Table 18). Returns {"alphas": [...], "scores": [...], "barrier": float},
    where barrier = mean of the endpoint scores minus the lowest score along the path.
    """
    if points < 2:
        raise ValueError(f"lmc points={points}: need at least the two endpoints")
    alphas = [i / (points - 1) for i in range(points)]
    scores = []
    for a in alphas:
        load_into(model, interpolate(sd_a, sd_b, a), f"interpolation alpha={a:g}")
        scores.append(float(score(predict_one(model, x, batch_size), y, metric)))
    barrier = max(0.0, (scores[0] + scores[-1]) / 2 - min(scores))
    return {"alphas": alphas, "scores": scores, "barrier": barrier}


def largest_float_key(sd: StateDict) -> str:
    """The float tensor with the most elements (first in key order on ties)."""
    best, size = None, -1
    for k, v in sd.items():
        if v.is_floating_point() and v.numel() > size:
            best, size = k, v.numel()
    if best is None:
        raise ValueError("state dict has no floating-point tensor to run PCA on")
    return best


def pca(originals: Sequence[StateDict], generated: Sequence[StateDict], key: str | None = None,
        components: int = 2) -> dict:
    """2-D PCA of one tensor's values across originals and generated models (RPG Fig. 10).

    The PCA is fit on originals and generated together, so both are shown in one shared basis:
    generated points landing among the originals means the generator learned where trained
    parameters live. Default tensor: the largest float tensor. Returns {"key", "original" [N, 2],
    "generated" [M, 2], "explained" [2]} as lists; components beyond the data's rank are 0.
    """
    everything = list(originals) + list(generated)
    if not everything:
        raise ValueError("PCA needs at least one state dict")
    key = key or largest_float_key(everything[0])
    for i, sd in enumerate(everything):
        if key not in sd:
            raise ValueError(f"PCA key {key!r} missing from "
                             f"{'original' if i < len(originals) else 'generated'} model "
                             f"#{i if i < len(originals) else i - len(originals)}")
    mat = torch.stack([sd[key].detach().reshape(-1).to(torch.float64) for sd in everything])
    centered = mat - mat.mean(dim=0, keepdim=True)
    # A plain SVD is exact and cheap here: at most a few hundred models by one layer's values.
    _, sing, vh = torch.linalg.svd(centered, full_matrices=False)
    k = min(components, vh.shape[0])
    coords = torch.zeros(mat.shape[0], components, dtype=torch.float64)
    coords[:, :k] = centered @ vh[:k].T
    total = float(sing.pow(2).sum())
    explained = [0.0] * components
    for i in range(k):
        explained[i] = float(sing[i] ** 2) / total if total > 0 else 0.0
    n = len(originals)
    return {"key": key, "original": coords[:n].tolist(), "generated": coords[n:].tolist(),
            "explained": explained}
