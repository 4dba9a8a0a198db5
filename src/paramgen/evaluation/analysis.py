"""Parameter-space analyses: noise, interpolation, linear mode connectivity and PCA."""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
from torch import Tensor, nn

from paramgen.evaluation.core import StateDict, load_into, predict_one, score


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
