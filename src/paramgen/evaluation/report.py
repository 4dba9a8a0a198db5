"""`EvalReport`: everything `evaluate` measured, as tables, markdown and JSON, and the writer of
the report folder (report.md, report.json, PNG plots)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paramgen import io
from paramgen.evaluation.baselines import MixtureBaseline, NoiseBaseline
from paramgen.evaluation.core import finite_or_none
from paramgen.evaluation.finetune import FinetuneTable
from paramgen.evaluation.novelty import BEAT_MARGIN, Frontier, beats, novelty
from paramgen.evaluation.tables import Table, comparison_table, num, pct, summary


@dataclass
class EvalReport:
    """Everything `evaluate` measured. Scores are fractions in [0, 1]; tables show percent.

    Generated models holding NaN/inf (`nonfinite`) and files of the samples folder that do not
    fit the collection (`skipped`) are named here and left out of every number and plot.
    """

    metric: str
    task: str | None
    info: dict[str, Any]
    n_test: int
    original_names: list[str]
    generated_names: list[str]
    original_scores: list[float]
    generated_scores: list[float]
    original_similarity: list[float]   # max IoU to the *other* originals
    generated_similarity: list[float]  # max IoU to any original
    noise: NoiseBaseline | None = None
    lmc: dict[str, Any] | None = None
    pca: dict[str, Any] | None = None
    nonfinite: dict[str, list[str]] = field(default_factory=dict)
    finetune: FinetuneTable | None = None
    original_distance: list[float] = field(default_factory=list)   # to the nearest other original
    generated_distance: list[float] = field(default_factory=list)  # to the nearest original
    mixture: MixtureBaseline | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    beat_margin: float = BEAT_MARGIN

    # -- derived numbers -----------------------------------------------------------------

    @property
    def original_summary(self) -> dict[str, float]:
        return summary(self.original_scores)

    @property
    def generated_summary(self) -> dict[str, float]:
        return summary(self.generated_scores)

    @property
    def original_novelty(self) -> list[float]:
        return novelty(self.original_similarity)

    @property
    def generated_novelty(self) -> list[float]:
        return novelty(self.generated_similarity)

    @property
    def frontiers(self) -> list[Frontier]:
        """The frontier of each baseline that was computed (noise, mixture)."""
        return [b.frontier() for b in (self.noise, self.mixture) if b is not None and b.scores]

    @property
    def beats_both(self) -> list[bool]:
        """Per generated model: above every baseline frontier at its novelty and within the
        margin (2 points) of the originals' mean. All False when no baseline was computed."""
        fronts = self.frontiers
        if not fronts:
            return [False] * len(self.generated_scores)
        return beats(self.generated_novelty, self.generated_scores, fronts,
                     self.original_summary["mean"], self.beat_margin)

    def beat_line(self) -> str:
        """The one-line verdict: how many generated models beat both baselines."""
        names = " and ".join(f.name for f in self.frontiers) or "no"
        n, k = len(self.generated_scores), sum(self.beats_both)
        return (f"{k} of {n} generated models beat the {names} baseline"
                f"{'s' if len(self.frontiers) != 1 else ''} (above the frontier at their "
                f"novelty, and within {100 * self.beat_margin:g} points of the originals' mean "
                f"{self.metric.replace('_', ' ')} {pct(self.original_summary['mean'])}%)")

    # -- tables --------------------------------------------------------------------------

    def table(self) -> Table:
        """The RPG Table 1 comparison: original vs generated best / mean / median / min / std."""
        return comparison_table(self.original_scores, self.generated_scores, self.metric)

    def similarity_table(self) -> Table:
        """Mean / median / min / max of the max-similarity of originals and generated models."""
        rows = []
        for name, sims in (("original", self.original_similarity),
                           ("generated", self.generated_similarity)):
            s = summary([v for v in sims if v == v])  # NaN (no other original) is left out
            rows.append([name, num(s["mean"]), num(s["median"]), num(s["min"]), num(s["best"])])
        return Table(headers=["models", "mean", "median", "min", "max"], rows=rows,
                     title="max similarity to the training checkpoints (IoU of wrong predictions)")

    def novelty_table(self) -> Table:
        """Novelty and nearest-neighbour distance of originals, generated and baseline models."""
        rows = []

        def row(name: str, nov: list[float], dist: list[float], scores: list[float]) -> None:
            a, b = summary([v for v in nov if v == v]), summary([v for v in dist if v == v])
            rows.append([name, str(len(scores)), pct(summary(scores)["mean"]), num(a["mean"]),
                         num(a["best"]), num(b["mean"], 4), num(b["min"], 4)])

        row("original", self.original_novelty, self.original_distance, self.original_scores)
        row("generated", self.generated_novelty, self.generated_distance, self.generated_scores)
        for base in (self.noise, self.mixture):
            if base is not None and base.scores:
                row(f"{base.name} baseline", [v for r in base.novelty for v in r],
                    [v for r in base.distances for v in r], [v for r in base.scores for v in r])
        return Table(headers=["models", "n", f"mean {self.metric.replace('_', ' ')} (%)",
                              "mean novelty", "max novelty", "mean NN distance",
                              "min NN distance"], rows=rows,
                     title="novelty (1 - max IoU of wrong predictions) and distance to the "
                           "nearest training checkpoint (L2 / the checkpoints' mean norm)")

    def lmc_table(self) -> Table | None:
        if not self.lmc:
            return None
        rows = [[f"{a:.2f}", pct(s)] for a, s in zip(self.lmc["alphas"], self.lmc["scores"])]
        return Table(headers=["alpha", f"{self.metric.replace('_', ' ')} (%)"], rows=rows,
                     title=f"linear interpolation (1 - alpha) A + alpha B, A = {self.lmc['a']}, "
                           f"B = {self.lmc['b']}",
                     notes=[f"barrier (mean of endpoints - lowest point): "
                            f"{pct(self.lmc['barrier'])} points"])

    def models_table(self) -> Table:
        """One row per model: metric, max similarity, novelty, distance, beats both."""
        rows = []
        dist_o = self.original_distance or [float("nan")] * len(self.original_scores)
        dist_g = self.generated_distance or [float("nan")] * len(self.generated_scores)
        for n, s, m, d in zip(self.original_names, self.original_scores,
                              self.original_similarity, dist_o):
            rows.append([n, "original", pct(s), num(m), num(1 - m if m == m else m),
                         num(d, 4), ""])
        for n, s, m, d, b in zip(self.generated_names, self.generated_scores,
                                 self.generated_similarity, dist_g, self.beats_both):
            rows.append([n, "generated", pct(s), num(m), num(1 - m), num(d, 4),
                         "yes" if b else "no"])
        return Table(headers=["model", "kind", f"{self.metric.replace('_', ' ')} (%)", "max-sim",
                              "novelty", "NN distance", "beats both"], rows=rows)

    # -- output --------------------------------------------------------------------------

    def warnings(self) -> list[str]:
        """Models left out of the numbers, one line each kind."""
        out = []
        if self.nonfinite:
            out.append(f"{len(self.nonfinite)} generated model(s) hold NaN/inf values and are "
                       "left out of every number and plot: "
                       + ", ".join(f"{n} ({', '.join(k[:3])})"
                                   for n, k in self.nonfinite.items()))
        if self.skipped:
            out.append(f"{len(self.skipped)} file(s) in the samples folder do not fit the "
                       "checkpoints and were not evaluated: "
                       + "; ".join(f"{n}: {why}" for n, why in self.skipped.items()))
        return out

    def to_markdown(self, plots: bool = False) -> str:
        """The whole report as markdown; `plots` links the PNGs written next to it."""
        info = self.info
        out = ["# paramgen evaluation report", "",
               f"- architecture: `{info.get('arch', '?')}`, data: `{info.get('data', '?')}`"
               + (f", task: `{self.task}`" if self.task else ""),
               f"- metric: {self.metric} on {self.n_test} test examples",
               f"- {len(self.original_scores)} original checkpoints, "
               f"{len(self.generated_scores)} generated models",
               f"- **{self.beat_line()}**"]
        out += [f"- **{w}**" for w in self.warnings()]
        out += ["", "## Performance", "", self.table().markdown(), "",
                "## Novelty against the baselines", "",
                "Novelty = 1 - a model's maximum IoU of wrong predictions over the training "
                "checkpoints (an original is compared with the others only). The baselines "
                "(Zeng et al. 2026) are the checkpoints with Gaussian noise added and mixtures "
                "of two checkpoints; each one's frontier is the best accuracy it reaches at "
                "each novelty. A generated model beats a baseline when it lies above the "
                "frontier at its novelty.", "",
                self.novelty_table().markdown(), ""]
        if plots:
            out += ["![accuracy vs novelty](novelty.png)", ""]
        out += ["## Similarity", "", self.similarity_table().markdown(), ""]
        for base in (self.noise, self.mixture):
            if base is not None and base.scores:
                out += [base.table(self.metric).markdown(), ""]
        if self.lmc:
            out += ["## Linear mode connectivity", "", self.lmc_table().markdown(), ""]
            if plots:
                out += ["![linear mode connectivity](lmc.png)", ""]
        if self.pca:
            ev = self.pca["explained"]
            out += ["## PCA", "",
                    f"Tensor `{self.pca['key']}`, fit on originals and generated together; "
                    f"explained variance {pct(ev[0])}% + {pct(ev[1])}%.", ""]
            if plots:
                out += ["![PCA](pca.png)", ""]
        if self.finetune is not None:
            out += ["## Fine-tuning from generated parameters", "",
                    self.finetune.to_markdown(), ""]
        out += ["## Per-model numbers", "", self.models_table().markdown(), ""]
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        """Every number, JSON-ready (NaN becomes null)."""
        def clean(v: Any) -> Any:
            if isinstance(v, float):
                return finite_or_none(v)
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [clean(x) for x in v]
            return v

        return clean({
            "metric": self.metric, "task": self.task, "info": self.info, "n_test": self.n_test,
            "original": {"names": self.original_names, "scores": self.original_scores,
                         "max_similarity": self.original_similarity,
                         "novelty": self.original_novelty,
                         "nn_distance": self.original_distance,
                         "summary": self.original_summary},
            "generated": {"names": self.generated_names, "scores": self.generated_scores,
                          "max_similarity": self.generated_similarity,
                          "novelty": self.generated_novelty,
                          "nn_distance": self.generated_distance,
                          "beats_both": self.beats_both,
                          "summary": self.generated_summary},
            "beat_both_count": sum(self.beats_both), "beat_margin": self.beat_margin,
            "noise_baseline": self.noise.to_dict() if self.noise else None,
            "mixture_baseline": self.mixture.to_dict() if self.mixture else None,
            "frontiers": [f.to_dict() for f in self.frontiers],
            "lmc": self.lmc, "pca": self.pca, "nonfinite": self.nonfinite,
            "skipped": self.skipped,
            "finetune": self.finetune.to_dict() if self.finetune else None,
        })


def write_report_files(report: EvalReport, out_dir: str | os.PathLike, plots: bool = False
                       ) -> dict[str, Path]:
    """Write report.json and report.md; with `plots` the markdown links the PNGs that
    `paramgen.evaluation.plots.write_plots` wrote beside it (`write_report` in
    `paramgen.evaluation.pipeline` does both). Each file is written atomically. Returns
    name -> path of what was written."""
    out = Path(out_dir)
    written: dict[str, Path] = {}
    written["json"] = io.write_json(out / "report.json", report.to_dict())
    written["markdown"] = io.write_text(out / "report.md", report.to_markdown(plots=plots) + "\n")
    return written
