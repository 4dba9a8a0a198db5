"""`evaluate`: every number comparing generated models with their training checkpoints, and the
report (markdown, JSON, PNG plots) that presents them."""

from __future__ import annotations

import io as _stdio
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from torch import Tensor, nn

from paramgen import io
from paramgen.evaluation.analysis import DEFAULT_NOISE_SCALES, NoiseBaseline, lmc, \
    noise_baseline, pca
from paramgen.evaluation.core import ModelSpec, StateDict, build_model, check_compatible, \
    finite_or_none, load_data_for, load_samples, nonfinite_keys, predictions, score
from paramgen.evaluation.finetune import FinetuneTable
from paramgen.evaluation.similarity import max_similarity, wrong_mask
from paramgen.evaluation.tables import Table, comparison_table, num, pct, summary

ORIGINAL_COLOR, GENERATED_COLOR = "tab:blue", "tab:orange"


@dataclass
class EvalReport:
    """Everything `evaluate` measured. Scores are fractions in [0, 1]; tables show percent."""

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

    @property
    def original_summary(self) -> dict[str, float]:
        return summary(self.original_scores)

    @property
    def generated_summary(self) -> dict[str, float]:
        return summary(self.generated_scores)

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
        """One row per model: its metric and max similarity (to pick or discard single models)."""
        rows = []
        for kind, names, scores, sims in (
                ("original", self.original_names, self.original_scores, self.original_similarity),
                ("generated", self.generated_names, self.generated_scores,
                 self.generated_similarity)):
            rows += [[n, kind, pct(s), num(m)] for n, s, m in zip(names, scores, sims)]
        return Table(headers=["model", "kind", f"{self.metric.replace('_', ' ')} (%)", "max-sim"],
                     rows=rows)

    def to_markdown(self, plots: bool = False) -> str:
        """The whole report as markdown; `plots` links the PNGs written next to it."""
        info = self.info
        out = ["# paramgen evaluation report", "",
               f"- architecture: `{info.get('arch', '?')}`, data: `{info.get('data', '?')}`"
               + (f", task: `{self.task}`" if self.task else ""),
               f"- metric: {self.metric} on {self.n_test} test examples",
               f"- {len(self.original_scores)} original checkpoints, "
               f"{len(self.generated_scores)} generated models", ""]
        if self.nonfinite:
            out += [f"- **{len(self.nonfinite)} generated model(s) hold NaN/inf values**: "
                    + ", ".join(f"{n} ({', '.join(k[:3])})" for n, k in self.nonfinite.items()),
                    ""]
        out += ["## Performance", "", self.table().markdown(), "",
                "## Similarity", "",
                "Each model's maximum IoU of wrong predictions over the training checkpoints "
                "(an original is not compared with itself). Lower = more novel.", "",
                self.similarity_table().markdown(), ""]
        if plots:
            out += ["![metric vs max similarity](similarity.png)", ""]
        if self.noise is not None:
            out += ["## Noise-added baseline", "",
                    "Originals with Gaussian noise (std = scale x each tensor's std) added to "
                    "their parameters. Generated models above and left of this curve are better "
                    "than noise at being both accurate and different.", "",
                    self.noise.table(self.metric).markdown(), ""]
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
                         "summary": self.original_summary},
            "generated": {"names": self.generated_names, "scores": self.generated_scores,
                          "max_similarity": self.generated_similarity,
                          "summary": self.generated_summary},
            "noise_baseline": self.noise.to_dict() if self.noise else None,
            "lmc": self.lmc, "pca": self.pca, "nonfinite": self.nonfinite,
            "finetune": self.finetune.to_dict() if self.finetune else None,
        })


def _resolve_ckpts(ckpts: Any) -> tuple[Any, str]:
    """A CheckpointSet (loaded from a folder path when given one) and a name for messages."""
    if isinstance(ckpts, (str, os.PathLike)):
        from paramgen.checkpoints import CheckpointSet

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
             noise_per_scale: int | None = 10, lmc_points: int = 11, pca_key: str | None = None,
             seed: int = 0, batch_size: int = 1024, plots: bool = True) -> EvalReport:
    """Compare generated models with the training checkpoints they were learned from.

    samples: generated state dicts, or a folder of `.safetensors` files.
    ckpts: a CheckpointSet (or its folder, or any sequence of state dicts with `model=` given).
    data: dataset name overriding the collection's, or test tensors `(x, y)` /
    `(x_train, y_train, x_test, y_test)`. task: bit string selecting a task of a task grid (and
    relabelling the test set). noise_scales: relative noise levels of the baseline (None or
    empty skips it). model: the network to load state dicts into (default: rebuilt from the
    collection's info). out_dir: also write report.md, report.json and plots there.
    """
    ckpts, where = _resolve_ckpts(ckpts)
    sample_dir = None
    if isinstance(samples, (str, os.PathLike)):
        sample_dir = Path(samples)
        sample_names, samples = load_samples(sample_dir)
    samples = list(samples)
    if not samples:
        raise ValueError("no generated samples to evaluate")
    names = list(sample_names) if sample_names else [f"sample_{i:03d}" for i in range(len(samples))]
    if len(names) != len(samples):
        raise ValueError(f"{len(names)} sample names for {len(samples)} samples")
    if len(ckpts) == 0:
        raise ValueError(f"{where}: empty collection")
    info = dict(getattr(ckpts, "info", None) or {})
    idx, task = _select_task(ckpts, task, where)
    originals = [ckpts[i] for i in idx]
    # Messages name the full path of a sample file; the report uses the short file names.
    paths = [str(sample_dir / n) for n in names] if sample_dir else names
    check_compatible(samples, originals[0], paths, where)

    if model is None:
        model = build_model(ModelSpec.from_info(info, where))
    metric = metric or info.get("metric") or "accuracy"
    x, y = _resolve_data(data, info, task)

    orig_preds = predictions(originals, model, x, batch_size, [f"{where} #{i}" for i in idx])
    gen_preds = predictions(samples, model, x, batch_size, paths)
    orig_scores = [float(v) for v in score(orig_preds, y, metric)]
    gen_scores = [float(v) for v in score(gen_preds, y, metric)]
    wrong_orig, wrong_gen = wrong_mask(orig_preds, y), wrong_mask(gen_preds, y)

    noise = None
    if noise_scales:
        noise = noise_baseline(originals, model, x, y, list(noise_scales), metric,
                               per_scale=noise_per_scale, seed=seed, original_preds=orig_preds,
                               batch_size=batch_size)
    # LMC between the best original and the best generated model: does the generator's best
    # output live in the same basin as the training checkpoints?
    bo, bg = max(range(len(orig_scores)), key=orig_scores.__getitem__), \
        max(range(len(gen_scores)), key=gen_scores.__getitem__)
    curve = lmc(originals[bo], samples[bg], model, x, y, lmc_points, metric, batch_size)
    curve.update(a=f"original #{idx[bo]}", b=names[bg])

    report = EvalReport(
        metric=metric, task=task, info=info, n_test=len(y),
        original_names=[f"original #{i}" for i in idx], generated_names=names,
        original_scores=orig_scores, generated_scores=gen_scores,
        original_similarity=max_similarity(wrong_orig, wrong_orig, exclude_self=True),
        generated_similarity=max_similarity(wrong_gen, wrong_orig),
        noise=noise, lmc=curve, pca=pca(originals, samples, pca_key),
        nonfinite={n: bad for n, sd in zip(names, samples) if (bad := nonfinite_keys(sd))})
    if out_dir is not None:
        write_report(report, out_dir, plots=plots)
    return report


# ----------------------------------------------------------------------------------- writing

def _figure(width: float = 6.4, height: float = 4.8):
    """A figure rendered by the Agg canvas directly: no pyplot, so the caller's backend and
    global figure state are untouched and nothing needs a display."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    buf = _stdio.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return io.write_bytes(path, buf.getvalue())


def _merge_close(means: list[tuple[float, float, float]]) -> list[tuple[float, float, str]]:
    """Labels for the per-scale mean points, one label per run of (nearly) coincident points.

    Small scales often leave a model unchanged, so their means coincide and their labels would
    print on top of each other; "x0.01-0.05" at the first point of the run stays readable.
    """
    if not means:
        return []
    xs, ys = [m[0] for m in means], [m[1] for m in means]
    span_x, span_y = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    groups: list[list[tuple[float, float, float]]] = [[means[0]]]
    for m in means[1:]:
        first = groups[-1][0]
        if abs(m[0] - first[0]) / span_x < 0.04 and abs(m[1] - first[1]) / span_y < 0.04:
            groups[-1].append(m)
        else:
            groups.append([m])
    return [(g[0][0], g[0][1], f"x{g[0][2]:g}" + (f"-{g[-1][2]:g}" if len(g) > 1 else ""))
            for g in groups]


def plot_similarity(report: EvalReport, path: str | os.PathLike) -> Path:
    """Metric vs max similarity: originals, generated and the noise-added baseline (p-diff Fig. 4,
    RPG Fig. 9). Upper-left = accurate and novel."""
    import matplotlib

    fig = _figure()
    ax = fig.add_subplot()
    if report.noise is not None:
        # Light grey = little noise, black = much noise: the darker, the further from its source.
        cmap = matplotlib.colormaps["Greys"]
        k = len(report.noise.scales)
        means = []
        for j, (s, sc, si) in enumerate(zip(report.noise.scales, report.noise.scores,
                                            report.noise.similarities)):
            color = cmap(0.3 + 0.7 * j / max(k - 1, 1))
            ax.scatter(si, [100 * v for v in sc], marker="x", s=20, color=color, alpha=0.8,
                       label=f"noise x{s:g}")
            means.append((sum(si) / len(si), 100 * sum(sc) / len(sc), s))
        ax.plot([m[0] for m in means], [m[1] for m in means], color="0.4", lw=1, ls="--",
                zorder=1, label="noise mean per scale")
        for mx, my, label in _merge_close(means):
            ax.annotate(label, (mx, my), textcoords="offset points", xytext=(4, -10),
                        fontsize=7, color="0.3")
    orig = [(m, 100 * s) for m, s in zip(report.original_similarity, report.original_scores)
            if m == m]
    if orig:
        ax.scatter(*zip(*orig), s=30, color=ORIGINAL_COLOR, label="original", zorder=3)
    ax.scatter(report.generated_similarity, [100 * s for s in report.generated_scores], s=30,
               color=GENERATED_COLOR, marker="^", label="generated", zorder=4)
    ax.set_xlabel("max similarity to training checkpoints (IoU of wrong predictions)")
    ax.set_ylabel(f"{report.metric.replace('_', ' ')} (%)")
    ax.set_title(f"{report.metric.replace('_', ' ')} vs max similarity: original, generated, "
                 "noise-added" + (f"\n(task {report.task})" if report.task else ""), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best", ncol=2)
    return _save(fig, Path(path))


def plot_pca(report: EvalReport, path: str | os.PathLike) -> Path:
    """Originals and generated models in the first two principal components of one tensor."""
    fig = _figure()
    ax = fig.add_subplot()
    p = report.pca
    o, g = p["original"], p["generated"]
    ax.scatter([c[0] for c in o], [c[1] for c in o], s=30, color=ORIGINAL_COLOR, label="original")
    ax.scatter([c[0] for c in g], [c[1] for c in g], s=30, color=GENERATED_COLOR, marker="^",
               label="generated")
    ev = p["explained"]
    ax.set_xlabel(f"PC 1 ({100 * ev[0]:.1f}% of variance)")
    ax.set_ylabel(f"PC 2 ({100 * ev[1]:.1f}% of variance)")
    ax.set_title(f"PCA of '{p['key']}': {len(o)} original, {len(g)} generated")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, Path(path))


def plot_lmc(report: EvalReport, path: str | os.PathLike) -> Path:
    """The metric along the straight line between the best original and best generated model."""
    fig = _figure(6.4, 4.0)
    ax = fig.add_subplot()
    c = report.lmc
    ax.plot(c["alphas"], [100 * s for s in c["scores"]], marker="o", color="tab:green",
            label="interpolated model")
    ax.scatter([0], [100 * c["scores"][0]], s=60, color=ORIGINAL_COLOR, zorder=3,
               label=f"alpha=0: {c['a']}")
    ax.scatter([1], [100 * c["scores"][-1]], s=60, color=GENERATED_COLOR, marker="^", zorder=3,
               label=f"alpha=1: {c['b']}")
    ax.set_xlabel("alpha  ((1 - alpha) * original + alpha * generated)")
    ax.set_ylabel(f"{report.metric.replace('_', ' ')} (%)")
    ax.set_title("linear mode connectivity: best original to best generated")
    # Leave room below the curve: a 1-point wobble should not look like a 50-point barrier.
    lo, hi = min(c["scores"]) * 100, max(c["scores"]) * 100
    ax.set_ylim(max(0.0, lo - 5), min(100.0, hi + 2))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, Path(path))


def write_report(report: EvalReport, out_dir: str | os.PathLike, plots: bool = True
                 ) -> dict[str, Path]:
    """Write report.md, report.json and (unless plots=False) similarity / pca / lmc PNGs.

    Every file is written atomically, so a report folder never holds a half-written file.
    Returns name → path of what was written.
    """
    out = Path(out_dir)
    written: dict[str, Path] = {}
    if plots:
        written["similarity"] = plot_similarity(report, out / "similarity.png")
        if report.pca:
            written["pca"] = plot_pca(report, out / "pca.png")
        if report.lmc:
            written["lmc"] = plot_lmc(report, out / "lmc.png")
    written["json"] = io.write_json(out / "report.json", report.to_dict())
    written["markdown"] = io.write_text(out / "report.md", report.to_markdown(plots=plots) + "\n")
    return written
