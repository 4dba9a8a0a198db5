"""Evaluation of generated parameters; the public entry point is `paramgen.evaluate`.

Split by concern: `core` (models, data, predictions, scores, sample folders), `similarity` (IoU
of wrong predictions), `novelty` (novelty, parameter distance, frontiers), `baselines` (noise
and mixture baselines), `analysis` (noise, interpolation, LMC, PCA), `finetune`, `tables`,
`report` (the report's content), `plots` (its pictures) and `pipeline` (`evaluate`).
"""

from paramgen.evaluation.analysis import (add_noise, interpolate, largest_float_key, lmc, pca)
from paramgen.evaluation.baselines import (DEFAULT_MIX_ALPHAS, DEFAULT_MIX_PAIRS,
                                           DEFAULT_NOISE_SCALES, MixtureBaseline, NoiseBaseline,
                                           choose_pairs, mixture_baseline, noise_baseline)
from paramgen.evaluation.core import (METRICS, ModelSpec, build_model, check_compatible,
                                      load_data_for, load_samples, load_splits, nonfinite_keys,
                                      predictions, scan_samples, score)
from paramgen.evaluation.finetune import FinetuneTable, finetune_curves
from paramgen.evaluation.novelty import BEAT_MARGIN, Frontier, ParamSpace, beats, novelty
from paramgen.evaluation.pipeline import evaluate, write_report
from paramgen.evaluation.plots import plot_lmc, plot_novelty, plot_pca, plot_similarity
from paramgen.evaluation.report import EvalReport
from paramgen.evaluation.similarity import iou, iou_matrix, max_similarity, wrong_mask
from paramgen.evaluation.tables import Table, comparison_table, summary

__all__ = [
    "BEAT_MARGIN", "DEFAULT_MIX_ALPHAS", "DEFAULT_MIX_PAIRS", "DEFAULT_NOISE_SCALES", "METRICS",
    "EvalReport", "FinetuneTable", "Frontier", "MixtureBaseline", "ModelSpec", "NoiseBaseline",
    "ParamSpace", "Table", "add_noise", "beats", "build_model", "check_compatible",
    "choose_pairs", "comparison_table", "evaluate", "finetune_curves", "interpolate", "iou",
    "iou_matrix", "largest_float_key", "lmc", "load_data_for", "load_samples", "load_splits",
    "max_similarity", "mixture_baseline", "noise_baseline", "nonfinite_keys", "novelty", "pca",
    "plot_lmc", "plot_novelty", "plot_pca", "plot_similarity", "predictions", "scan_samples",
    "score", "summary", "wrong_mask", "write_report",
]
