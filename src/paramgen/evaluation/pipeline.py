"""`evaluate`: load what is compared, score every model, build the baselines, assemble the
report. Each number comes from the module that owns it; this file only orchestrates."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from torch import Tensor, nn

from paramgen.checkpoints import CheckpointSet
from paramgen.evaluation.analysis import lmc, pca
from paramgen.evaluation.baselines import (DEFAULT_MIX_ALPHAS, DEFAULT_MIX_PAIRS,
                                           DEFAULT_NOISE_SCALES, mixture_baseline,
                                           noise_baseline)
from paramgen.evaluation.core import ModelSpec, StateDict, build_model, check_compatible, \
    load_data_for, nonfinite_keys, predictions, scan_samples, score
from paramgen.evaluation.novelty import ParamSpace
from paramgen.evaluation.plots import write_plots
from paramgen.evaluation.report import EvalReport, write_report_files
from paramgen.evaluation.similarity import max_similarity, wrong_mask


def _resolve_ckpts(ckpts: Any) -> tuple[Any, str]:
    """A CheckpointSet (loaded from a folder path when given one) and a name for messages."""
    if isinstance(ckpts, (str, os.PathLike)):
        path = Path(ckpts)
        if not path.exists():
            raise FileNotFoundError(f"checkpoint folder {path} does not exist")
        return CheckpointSet.load(path), f"checkpoints in {path}"
    return ckpts, "training checkpoints"


def _select_task(ckpts: Any, task: str | None, where: str) -> tuple[list[int], str | None]:
    """Indices of the originals to compare with, and the task they were trained on.

    In a task grid only the checkpoints of the evaluated task are its originals; comparing a
    model for task A with checkpoints for task B would measure nothing.
    """
    n = len(ckpts)
    tasks = [ckpts.provenance(i).get("task") for i in range(n)] if hasattr(ckpts, "provenance") \
        else [None] * n
    recorded = sorted({t for t in tasks if t is not None})
    info_task = (getattr(ckpts, "info", None) or {}).get("task")
    if not recorded and info_task:
        # A single-task collection records its task once, in the collection info.
        tasks, recorded = [info_task] * n, [info_task]
    if task is not None:
        task = str(task).strip()
        if not recorded:
            return list(range(n)), task  # a single-task collection: every checkpoint is the task's
        idx = [i for i, t in enumerate(tasks) if t == task]
        if not idx:
            shown = ", ".join(recorded[:5]) + (" ..." if len(recorded) > 5 else "")
            raise ValueError(f"{where}: no checkpoint was trained on task {task!r} "
                             f"({len(recorded)} tasks present: {shown})")
        return idx, task
    if len(recorded) > 1:
        raise ValueError(f"{where} is a task grid of {len(recorded)} tasks; choose one to "
                         f"evaluate with task=BITS (--task), e.g. {recorded[0]!r}")
    return list(range(n)), (recorded[0] if recorded else None)


def _resolve_data(data: Any, info: Mapping[str, Any], task: str | None
                  ) -> tuple[Tensor, Tensor]:
    """(x_test, y_test): from a name, an explicit tuple, or the collection's own dataset."""
    if data is None or isinstance(data, str):
        return load_data_for(info, task=task, split="test", data=data)
    data = tuple(data)
    if len(data) == 2:
        return data[0], data[1].long()
    if len(data) == 4:
        return data[2], data[3].long()
    raise ValueError(f"data: expected a dataset name, (x_test, y_test) or a 4-tuple of splits, "
                     f"got {len(data)} items")


def evaluate(samples: Sequence[StateDict] | str | os.PathLike, ckpts: Any,
             data: str | Sequence[Tensor] | None = None, task: str | None = None,
             noise_scales: Sequence[float] | None = DEFAULT_NOISE_SCALES,
             out_dir: str | os.PathLike | None = None, *, model: nn.Module | None = None,
             metric: str | None = None, sample_names: Sequence[str] | None = None,
             noise_per_scale: int | None = 10,
             mix_alphas: Sequence[float] | None = DEFAULT_MIX_ALPHAS,
             mix_pairs: int = DEFAULT_MIX_PAIRS, lmc_points: int = 11,
             pca_key: str | None = None, seed: int = 0, batch_size: int = 1024,
             plots: bool = True) -> EvalReport:
    """Compare generated models with the training checkpoints they were learned from.

    samples: generated state dicts, or a folder of `.safetensors` files (files that do not fit
    the checkpoints' keys and shapes are named in `report.skipped` and not evaluated).
    ckpts: a CheckpointSet (or its folder, or any sequence of state dicts with `model=` given).
    data: dataset name overriding the collection's, or test tensors `(x, y)` /
    `(x_train, y_train, x_test, y_test)`. task: bit string selecting a task of a task grid (and
    relabelling the test set). noise_scales: relative noise levels of the noise baseline;
    mix_alphas / mix_pairs: weights and number of checkpoint pairs of the mixture baseline (None
    or empty skips a baseline). model: the network to load state dicts into (default: rebuilt
    from the collection's info). out_dir: also write report.md, report.json and plots there.
    Generated models holding NaN/inf are named in `report.nonfinite` and left out of the rest.
    """
    ckpts, where = _resolve_ckpts(ckpts)
    if len(ckpts) == 0:
        raise ValueError(f"{where}: empty collection")
    info = dict(getattr(ckpts, "info", None) or {})
    idx, task = _select_task(ckpts, task, where)
    originals = [ckpts[i] for i in idx]
    skipped: dict[str, str] = {}
    if isinstance(samples, (str, os.PathLike)):
        sample_dir = Path(samples)
        names, samples, skipped = scan_samples(sample_dir, originals[0], where)
        paths = [str(sample_dir / n) for n in names]
    else:
        samples = list(samples)
        if not samples:
            raise ValueError("no generated samples to evaluate")
        names = list(sample_names) if sample_names else \
            [f"sample_{i:03d}" for i in range(len(samples))]
        if len(names) != len(samples):
            raise ValueError(f"{len(names)} sample names for {len(samples)} samples")
        paths = names
        check_compatible(samples, originals[0], paths, where)
    # A diverged sample is named, then left out: one NaN must not break (or fake) every number.
    nonfinite = {n: bad for n, sd in zip(names, samples) if (bad := nonfinite_keys(sd))}
    keep = [i for i, n in enumerate(names) if n not in nonfinite]
    names, samples, paths = ([v[i] for i in keep] for v in (names, samples, paths))

    if model is None:
        model = build_model(ModelSpec.from_info(info, where))
    metric = metric or info.get("metric") or "accuracy"
    x, y = _resolve_data(data, info, task)

    orig_preds = predictions(originals, model, x, batch_size, [f"{where} #{i}" for i in idx])
    gen_preds = predictions(samples, model, x, batch_size, paths)
    orig_scores = [float(v) for v in score(orig_preds, y, metric)]
    gen_scores = [float(v) for v in score(gen_preds, y, metric)]
    wrong_orig, wrong_gen = wrong_mask(orig_preds, y), wrong_mask(gen_preds, y)
    space = ParamSpace(originals)

    common = dict(metric=metric, seed=seed, original_preds=orig_preds, batch_size=batch_size,
                  space=space)
    noise = None
    if noise_scales:
        noise = noise_baseline(originals, model, x, y, list(noise_scales),
                               per_scale=noise_per_scale, **common)
    mixture = None
    if mix_alphas and mix_pairs > 0 and len(originals) > 1:
        runs = [ckpts.run(i) for i in idx] if hasattr(ckpts, "run") else None
        mixture = mixture_baseline(originals, model, x, y, list(mix_alphas), pairs=mix_pairs,
                                   runs=runs, **common)
    curve = pcs = None
    if samples:
        # LMC between the best original and the best generated model: does the generator's
        # best output live in the same basin as the training checkpoints?
        bo = max(range(len(orig_scores)), key=orig_scores.__getitem__)
        bg = max(range(len(gen_scores)), key=gen_scores.__getitem__)
        curve = lmc(originals[bo], samples[bg], model, x, y, lmc_points, metric, batch_size)
        curve.update(a=f"original #{idx[bo]}", b=names[bg])
        pcs = pca(originals, samples, pca_key)

    report = EvalReport(
        metric=metric, task=task, info=info, n_test=len(y),
        original_names=[f"original #{i}" for i in idx], generated_names=names,
        original_scores=orig_scores, generated_scores=gen_scores,
        original_similarity=max_similarity(wrong_orig, wrong_orig, exclude_self=True),
        generated_similarity=max_similarity(wrong_gen, wrong_orig),
        noise=noise, mixture=mixture, lmc=curve, pca=pcs, nonfinite=nonfinite,
        skipped=skipped, original_distance=space.nearest_among_originals(),
        generated_distance=space.nearest(samples))
    if out_dir is not None:
        write_report(report, out_dir, plots=plots)
    return report


def write_report(report: EvalReport, out_dir: str | os.PathLike, plots: bool = True
                 ) -> dict[str, Path]:
    """Write report.md, report.json and (unless plots=False) novelty / pca / lmc PNGs.

    Every file is written atomically, so a report folder never holds a half-written file.
    Returns name -> path of what was written.
    """
    written = write_plots(report, out_dir) if plots else {}
    written.update(write_report_files(report, out_dir, plots=plots))
    return written
