"""Evaluation of generated parameters; the public entry point is `paramgen.evaluate`.

Split by concern: `core` (models, data, predictions, scores), `similarity` (IoU of wrong
predictions), `analysis` (noise baseline, LMC, PCA), `finetune`, `tables`, `report`.
"""

from paramgen.evaluation.analysis import (DEFAULT_NOISE_SCALES, NoiseBaseline, add_noise,
                                          interpolate, largest_float_key, lmc, noise_baseline, pca)
from paramgen.evaluation.core import (METRICS, ModelSpec, build_model, check_compatible,
                                      load_data_for, load_samples, load_splits, nonfinite_keys,
                                      predictions, score)
from paramgen.evaluation.finetune import FinetuneTable, finetune_curves
from paramgen.evaluation.report import (EvalReport, evaluate, plot_lmc, plot_pca,
                                        plot_similarity, write_report)
from paramgen.evaluation.similarity import iou, iou_matrix, max_similarity, wrong_mask
from paramgen.evaluation.tables import Table, comparison_table, summary

__all__ = [
    "DEFAULT_NOISE_SCALES", "METRICS", "EvalReport", "FinetuneTable", "ModelSpec",
    "NoiseBaseline", "Table", "add_noise", "build_model", "check_compatible", "comparison_table",
    "evaluate", "finetune_curves", "interpolate", "iou", "iou_matrix", "largest_float_key", "lmc",
    "load_data_for", "load_samples", "load_splits", "max_similarity", "noise_baseline",
    "nonfinite_keys", "pca", "plot_lmc", "plot_pca", "plot_similarity", "predictions", "score",
    "summary", "wrong_mask", "write_report",
]
