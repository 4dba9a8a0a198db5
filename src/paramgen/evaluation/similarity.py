"""Similarity of models by the IoU of their wrong predictions (p-diff §4, RPG appendix B.4).

Parameters are compared through behaviour rather than weights: two models are similar when they
get the same test examples wrong. The "novelty" of a model is its maximum similarity to any
training checkpoint (its nearest neighbour); lower means more novel.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def wrong_mask(preds: Tensor, y: Tensor) -> Tensor:
    """Boolean mask of wrongly predicted test indices; preds [n] or [M, n], y [n]."""
    if preds.shape[-1] != y.shape[-1]:
        raise ValueError(f"predictions cover {preds.shape[-1]} test examples but the labels "
                         f"cover {y.shape[-1]}")
    return preds != y.to(preds.device)


def iou(wrong_a: Tensor, wrong_b: Tensor) -> float:
    """|W_a ∩ W_b| / |W_a ∪ W_b| of two boolean wrong-prediction masks.

    Two models without a single mistake behave identically on the test set, so their IoU is
    defined as 1 (not 0/0).
    """
    a, b = wrong_a.bool(), wrong_b.bool()
    if a.shape != b.shape:
        raise ValueError(f"wrong-prediction masks differ in shape: {tuple(a.shape)} vs "
                         f"{tuple(b.shape)}")
    union = int((a | b).sum())
    if union == 0:
        return 1.0
    return int((a & b).sum()) / union


def iou_matrix(wrong_a: Tensor, wrong_b: Tensor) -> Tensor:
    """IoU of every row of `wrong_a` [M, n] with every row of `wrong_b` [R, n] → [M, R] float64.

    Computed with one matrix product instead of M×R set operations; counts stay exact because
    they are integers far below 2**53 in float64.
    """
    a = wrong_a.to(torch.float64)
    b = wrong_b.to(torch.float64)
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected masks [M, n] and [R, n], got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    inter = a @ b.T
    union = a.sum(1, keepdim=True) + b.sum(1).unsqueeze(0) - inter
    out = torch.where(union > 0, inter / union.clamp_min(1.0), torch.ones_like(inter))
    return out


def max_similarity(preds_models: Tensor, preds_refs: Tensor, exclude_self: bool = False, *,
                   y: Tensor | None = None) -> list[float]:
    """For each model its maximum IoU of wrong predictions over the reference models.

    preds_models [M, n] and preds_refs [R, n] are class predictions on the same test set with
    labels `y` [n]; without `y` they must already be boolean wrong-prediction masks (from
    `wrong_mask`), which saves recomputing them when one set is compared several times.
    With `exclude_self=True` the two sets must be the same models in the same order (originals
    compared to originals): model i is not compared to reference i, otherwise every original would
    trivially score 1. A model with no other reference to compare to gets NaN.
    """
    if y is None:
        if preds_models.dtype != torch.bool or preds_refs.dtype != torch.bool:
            raise ValueError("max_similarity without y= needs boolean wrong-prediction masks; "
                             f"got dtypes {preds_models.dtype} and {preds_refs.dtype} "
                             "(pass the labels as y= to compare class predictions)")
        wrong_models, wrong_refs = preds_models, preds_refs
    else:
        wrong_models, wrong_refs = wrong_mask(preds_models, y), wrong_mask(preds_refs, y)
    sims = iou_matrix(wrong_models, wrong_refs)
    if exclude_self:
        if wrong_models.shape != wrong_refs.shape:
            raise ValueError("exclude_self=True compares a set of models with itself, but got "
                             f"{wrong_models.shape[0]} models and {wrong_refs.shape[0]} references")
        sims.fill_diagonal_(-math.inf)
    if sims.shape[1] == 0:
        return [math.nan] * sims.shape[0]
    best = sims.max(dim=1).values
    return [math.nan if math.isinf(v) else float(v) for v in best.tolist()]
